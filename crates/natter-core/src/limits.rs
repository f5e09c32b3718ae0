//! Limits that keep one client from taking a node (or its LLM bill) for itself: message and
//! turn rates per connection, per user and per address, and open connections per user and
//! per address.
//!
//! Rates are GCRA buckets from `governor`, keyed by connection id, `org/user` and IP: a quota
//! of `n` per minute allows a burst of `n`, then one every `60/n` seconds. A refusal says when
//! the next one would be allowed (`rate_limited` with `retryAfterMs`). Every face posts through
//! the core, so one user's rate is shared by its sockets, streams and HTTP calls alike.
//!
//! The counts are this node's: with several nodes behind a balancer, each enforces its own.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use natter_protocol::{ErrorCode, WireError};

use crate::chat::{Identity, Source};
use crate::error::CoreError;

/// A rate per minute for each kind of key; 0 means no limit for that key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopedRate {
    pub per_connection: u32,
    pub per_user: u32,
    pub per_ip: u32,
}

impl ScopedRate {
    pub const UNLIMITED: Self = Self {
        per_connection: 0,
        per_user: 0,
        per_ip: 0,
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// User messages (every face), per minute.
    pub messages: ScopedRate,
    /// AI turns started (a message that gets a reply, a regenerate), per minute.
    pub turns: ScopedRate,
    /// Open long-lived connections (sockets, SSE streams, WebSockets) per user; 0: no limit.
    pub max_connections_per_user: usize,
    /// … and per address.
    pub max_connections_per_ip: usize,
    /// Attachment uploads per user, per minute (`--attachment-uploads-per-minute`); 0: no limit.
    pub uploads_per_user: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            messages: ScopedRate {
                per_connection: 60,
                per_user: 120,
                per_ip: 1200,
            },
            turns: ScopedRate {
                per_connection: 20,
                per_user: 30,
                per_ip: 600,
            },
            max_connections_per_user: 32,
            max_connections_per_ip: 512,
            uploads_per_user: 30,
        }
    }
}

/// How often the buckets of keys that have been quiet long enough to be full again are
/// dropped, counted in checks (so memory follows the active keys, not every key ever seen).
const PURGE_EVERY: u64 = 4096;

/// One kind of key's bucket set.
struct Buckets<K: Hash + Eq + Clone> {
    limiter: Option<DefaultKeyedRateLimiter<K>>,
    per_minute: u32,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(per_minute: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            per_minute,
        }
    }

    /// Takes one from `key`'s bucket, or says how long until one is there.
    fn take(&self, key: &K) -> Result<(), Duration> {
        match &self.limiter {
            None => Ok(()),
            Some(l) => l
                .check_key(key)
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
        }
    }

    fn purge(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

struct RateSet {
    what: &'static str,
    conn: Buckets<Arc<str>>,
    user: Buckets<(Arc<str>, Arc<str>)>,
    ip: Buckets<IpAddr>,
}

impl RateSet {
    fn new(what: &'static str, r: ScopedRate) -> Self {
        Self {
            what,
            conn: Buckets::new(r.per_connection),
            user: Buckets::new(r.per_user),
            ip: Buckets::new(r.per_ip),
        }
    }

    fn take(&self, who: &Identity, from: &Source) -> Result<(), WireError> {
        let refused = |scope: &str, per_minute: u32, wait: Duration| {
            WireError::rate_limited(
                format!(
                    "too many {} from this {scope} (at most {per_minute} a minute); retry in {} ms",
                    self.what,
                    wait.as_millis() + 1
                ),
                wait,
            )
        };
        if let Some(conn) = &from.conn {
            self.conn
                .take(conn)
                .map_err(|w| refused("connection", self.conn.per_minute, w))?;
        }
        self.user
            .take(&(who.org.clone(), who.user_id.clone()))
            .map_err(|w| refused("user", self.user.per_minute, w))?;
        if let Some(ip) = &from.ip {
            self.ip
                .take(ip)
                .map_err(|w| refused("address", self.ip.per_minute, w))?;
        }
        Ok(())
    }

    fn purge(&self) {
        self.conn.purge();
        self.user.purge();
        self.ip.purge();
    }
}

/// Open connections per key.
#[derive(Default)]
struct Counts {
    users: HashMap<(Arc<str>, Arc<str>), usize>,
    ips: HashMap<IpAddr, usize>,
}

pub struct Limits {
    config: LimitsConfig,
    messages: RateSet,
    turns: RateSet,
    uploads: RateSet,
    checks: AtomicU64,
    open: Arc<Mutex<Counts>>,
}

impl Limits {
    pub fn new(config: LimitsConfig) -> Self {
        Self {
            messages: RateSet::new("messages", config.messages),
            turns: RateSet::new("AI replies", config.turns),
            uploads: RateSet::new(
                "attachment uploads",
                ScopedRate {
                    per_user: config.uploads_per_user,
                    ..ScopedRate::UNLIMITED
                },
            ),
            checks: AtomicU64::new(0),
            open: Arc::default(),
            config,
        }
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    fn tick(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1 {
            self.messages.purge();
            self.turns.purge();
            self.uploads.purge();
        }
    }

    /// One user message, and one turn when it will get a reply. Nothing is taken from the
    /// turn buckets when the message itself is refused.
    pub fn message(
        &self,
        who: &Identity,
        from: &Source,
        starts_turn: bool,
    ) -> Result<(), CoreError> {
        self.tick();
        self.messages.take(who, from).map_err(CoreError::Rejected)?;
        if starts_turn {
            self.turns.take(who, from).map_err(CoreError::Rejected)?;
        }
        Ok(())
    }

    /// One attachment upload (per user only: uploads come over plain HTTP requests).
    pub fn upload(&self, who: &Identity, from: &Source) -> Result<(), CoreError> {
        self.tick();
        let from = Source {
            conn: None,
            ip: from.ip,
        };
        self.uploads.take(who, &from).map_err(CoreError::Rejected)
    }

    /// A turn that no new message starts (regenerate).
    pub fn turn(&self, who: &Identity, from: &Source) -> Result<(), CoreError> {
        self.tick();
        self.turns.take(who, from).map_err(CoreError::Rejected)
    }

    /// Counts a new long-lived connection, or refuses it with `too_many_connections`. The
    /// count drops when the returned [`Admission`] does.
    pub fn admit(&self, who: &Identity, ip: Option<IpAddr>) -> Result<Admission, CoreError> {
        let user = (who.org.clone(), who.user_id.clone());
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let max_user = self.config.max_connections_per_user;
        if max_user > 0 && open.users.get(&user).copied().unwrap_or(0) >= max_user {
            return Err(CoreError::rejected(
                ErrorCode::TooManyConnections,
                format!(
                    "user `{}` already has {max_user} open connections; close one first",
                    who.user_id
                ),
            ));
        }
        let max_ip = self.config.max_connections_per_ip;
        if let Some(ip) = ip
            && max_ip > 0
            && open.ips.get(&ip).copied().unwrap_or(0) >= max_ip
        {
            return Err(CoreError::rejected(
                ErrorCode::TooManyConnections,
                format!("this address already has {max_ip} open connections; close one first"),
            ));
        }
        *open.users.entry(user.clone()).or_default() += 1;
        if let Some(ip) = ip {
            *open.ips.entry(ip).or_default() += 1;
        }
        Ok(Admission {
            open: self.open.clone(),
            user,
            ip,
        })
    }
}

/// One counted connection; dropping it frees the slot.
pub struct Admission {
    open: Arc<Mutex<Counts>>,
    user: (Arc<str>, Arc<str>),
    ip: Option<IpAddr>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("user", &self.user)
            .field("ip", &self.ip)
            .finish()
    }
}

fn release<K: Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        release(&mut open.users, &self.user);
        if let Some(ip) = &self.ip {
            release(&mut open.ips, ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str) -> Identity {
        Identity::new("acme", user)
    }

    #[test]
    fn rates_refuse_with_a_retry_hint_per_key() {
        let limits = Limits::new(LimitsConfig {
            messages: ScopedRate {
                per_connection: 0,
                per_user: 2,
                per_ip: 0,
            },
            turns: ScopedRate::UNLIMITED,
            ..Default::default()
        });
        let from = Source::default();
        assert!(limits.message(&who("ann"), &from, true).is_ok());
        assert!(limits.message(&who("ann"), &from, true).is_ok());
        let e = limits
            .message(&who("ann"), &from, true)
            .unwrap_err()
            .to_wire();
        assert_eq!(e.code, ErrorCode::RateLimited);
        let wait = e.retry_after_ms.unwrap();
        assert!(wait > 0 && wait <= 30_001, "{wait}");
        // Another user, and the same user id in another org, have their own buckets.
        assert!(limits.message(&who("bob"), &from, true).is_ok());
        assert!(
            limits
                .message(&Identity::new("other", "ann"), &from, true)
                .is_ok()
        );
    }

    #[test]
    fn turns_are_counted_apart_from_messages() {
        let limits = Limits::new(LimitsConfig {
            messages: ScopedRate::UNLIMITED,
            turns: ScopedRate {
                per_connection: 0,
                per_user: 0,
                per_ip: 1,
            },
            ..Default::default()
        });
        let ip = Source::new(None, Some("10.0.0.1".parse().unwrap()));
        assert!(limits.message(&who("ann"), &ip, true).is_ok());
        // No reply asked: not a turn.
        assert!(limits.message(&who("ann"), &ip, false).is_ok());
        assert!(limits.message(&who("bob"), &ip, true).is_err());
        assert!(limits.turn(&who("bob"), &Source::default()).is_ok());
    }

    #[test]
    fn connections_are_counted_until_dropped() {
        let limits = Limits::new(LimitsConfig {
            max_connections_per_user: 2,
            max_connections_per_ip: 3,
            ..Default::default()
        });
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        let a = limits.admit(&who("ann"), Some(ip)).unwrap();
        let _b = limits.admit(&who("ann"), Some(ip)).unwrap();
        let e = limits.admit(&who("ann"), Some(ip)).unwrap_err().to_wire();
        assert_eq!(e.code, ErrorCode::TooManyConnections);
        let _c = limits.admit(&who("bob"), Some(ip)).unwrap();
        assert!(limits.admit(&who("cat"), Some(ip)).is_err(), "per address");
        drop(a);
        assert!(limits.admit(&who("ann"), Some(ip)).is_ok());
        assert!(limits.open.lock().unwrap().users.len() <= 2);
    }
}
