//! The bus, presence and coordinator the `bus` setting names: `memory` (one process, the
//! default) or `redis://…` (natter-bus-redis: any number of nodes sharing one Redis).

use std::sync::Arc;

use natter_bus_redis::{RedisConfig, RedisNode};
use natter_core::bus::Bus;
use natter_core::bus_memory::MemoryBus;
use natter_core::coordinator::{Coordinator, MemoryCoordinator};
use natter_core::presence::Presence;
use natter_core::presence_memory::MemoryPresence;

use crate::ServerConfig;

/// Which implementation a `bus` setting names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    Memory,
    Redis,
}

impl BusKind {
    /// The implementation for `bus`; anything else is an error naming what is known.
    pub fn of(bus: &str) -> anyhow::Result<Self> {
        if bus == "memory" {
            return Ok(Self::Memory);
        }
        let scheme = bus.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("redis" | "redis+unix") => Ok(Self::Redis),
            _ => anyhow::bail!(
                "unsupported bus `{}`: expected `memory` or redis://[user:password@]host:port/[db]",
                redact(bus)
            ),
        }
    }
}

/// The URL as logs may show it: a password is replaced by `***`.
pub fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(at)) if at > scheme.len() + 3 => {
            let creds = &rest[..at - scheme.len() - 3];
            let host = &url[at..];
            match creds.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***{host}"),
                None => format!("{scheme}://***{host}"),
            }
        }
        _ => url.to_owned(),
    }
}

/// Opens the bus, presence and coordinator of `config.bus`. With Redis, the node starts even
/// while Redis is unreachable (`/readyz` reports it, and everything resumes when it is back).
pub async fn open_cluster(
    config: &ServerConfig,
) -> anyhow::Result<(Arc<dyn Bus>, Arc<dyn Presence>, Arc<dyn Coordinator>)> {
    match BusKind::of(&config.bus)? {
        BusKind::Memory => Ok((
            Arc::new(MemoryBus::new(config.bus_capacity)),
            Arc::new(MemoryPresence::default()),
            Arc::new(MemoryCoordinator::default()),
        )),
        BusKind::Redis => {
            natter_bus_redis::telemetry::describe();
            let mut redis = RedisConfig::new(config.bus.clone());
            redis.bus_capacity = config.bus_capacity;
            let node = RedisNode::connect(redis)
                .await
                .map_err(|e| anyhow::anyhow!("bus {}: {e}", redact(&config.bus)))?;
            match node.ping().await {
                Ok(()) => {
                    tracing::info!(bus = %redact(&config.bus), node = node.node_id(), "redis bus connected")
                }
                Err(e) => tracing::warn!(
                    bus = %redact(&config.bus),
                    error = %e,
                    "redis is not reachable yet; /readyz reports 503 until it is"
                ),
            }
            Ok((node.bus(), node.presence(), node.coordinator()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_settings() {
        assert_eq!(BusKind::of("memory").unwrap(), BusKind::Memory);
        assert_eq!(
            BusKind::of("redis://127.0.0.1:6379/0").unwrap(),
            BusKind::Redis
        );
        assert_eq!(BusKind::of("REDIS://h").unwrap(), BusKind::Redis);
        let err = BusKind::of("kafka://u:secret@h").unwrap_err().to_string();
        assert!(
            err.contains("unsupported bus") && !err.contains("secret"),
            "{err}"
        );
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("redis://u:pw@h"), "redis://u:***@h");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }

    #[tokio::test]
    async fn the_setting_picks_the_cluster() {
        use crate::config::{ApiKeys, Settings};
        let resolve = |bus: Option<&str>| {
            ServerConfig::resolve(
                Settings {
                    bus: bus.map(str::to_owned),
                    ..Default::default()
                },
                ApiKeys::default(),
            )
        };
        let memory = resolve(None).unwrap();
        assert_eq!(memory.bus, "memory");
        let (_, _, coordinator) = open_cluster(&memory).await.unwrap();
        assert!(!coordinator.is_shared());
        assert!(resolve(Some("nats://x")).is_err());
        // Redis need not be up for the node to start (nothing listens on port 1).
        let redis = resolve(Some("redis://127.0.0.1:1/")).unwrap();
        let (bus, _, coordinator) = open_cluster(&redis).await.unwrap();
        assert!(coordinator.is_shared());
        assert!(bus.ping().await.is_err());
        let from_toml: Settings = toml::from_str("bus = \"redis://h:6379/\"").unwrap();
        assert_eq!(from_toml.bus.as_deref(), Some("redis://h:6379/"));
    }
}
