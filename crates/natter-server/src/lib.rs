//! Composition: builds the core from configuration, puts the faces on one axum router,
//! adds the operations endpoints, and serves until shutdown.

pub mod cluster;
pub mod config;
pub mod extractor;
mod ops;
mod origin;
pub mod otel;
mod playground;
mod socketio_head;
pub mod store;
pub mod store_copy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::serve::ListenerExt;
use natter_core::ChatCore;
use natter_core::Seams;
use natter_core::agents::{Agent, Agents};
use natter_core::provider::Provider;
use natter_core::tools::ToolRegistry;
use natter_providers::anthropic::AnthropicProvider;
use natter_providers::demo::DemoProvider;
use natter_providers::openai::OpenAiProvider;
use natter_socketio_transport::natter_engineio;
use socketioxide::SocketIo;
use tokio_util::sync::CancellationToken;

pub use config::{ApiKeys, ProviderKind, ServerConfig, SocketIoTransport};

/// The Socket.IO server the face runs on (`--socketio-transport`).
enum SocketIoServer {
    Natter(Arc<natter_engineio::Engine<natter_socketio_transport::SocketIo>>),
    Socketioxide(SocketIo),
}

impl SocketIoServer {
    /// Builds the server with the face on its root namespace, and the routes that serve it.
    fn build(config: &ServerConfig, core: &ChatCore, router: Router) -> (SocketIoServer, Router) {
        // How long an Engine.IO connection may stay without a Socket.IO connect. socketioxide
        // also keeps a refused handshake's connection (about 20 KB) until then, so this bounds
        // what refused clients (bad tokens, over a cap) can hold: 10 s, not 45.
        let connect_timeout = Duration::from_secs(10);
        let max_payload = usize::try_from(config.max_payload_bytes).unwrap_or(usize::MAX);
        match config.socketio_transport {
            SocketIoTransport::Natter => {
                let io = natter_socketio_transport::SocketIo::new(connect_timeout)
                    .keep_headers(natter_socketio::HANDSHAKE_HEADERS)
                    .namespace(
                        "/",
                        natter_socketio::namespace(core.clone(), config.socketio.clone()),
                    );
                let engine = natter_engineio::Engine::new(
                    natter_engineio::Config {
                        ping_interval: config.ping_interval,
                        ping_timeout: config.ping_timeout,
                        max_payload,
                        max_queued_bytes: config.socket_queue_bytes,
                        ..natter_engineio::Config::default()
                    },
                    io,
                );
                // The engine copies the few handshake fields the face reads and keeps no
                // request head, so `socketio_head::detach` is not needed here.
                let router = router.merge(engine.router(socketio_head::SOCKET_IO_PATH));
                (SocketIoServer::Natter(engine), router)
            }
            SocketIoTransport::Socketioxide => {
                let (layer, io) = SocketIo::builder()
                    .max_payload(config.max_payload_bytes)
                    // max_payload only bounds polling; WebSocket messages have their own limit.
                    .ws_max_message_size(max_payload)
                    .max_buffer_size(config.socket_buffer)
                    // 1 KiB instead of 4: −3.05 KiB RSS per idle socket (29.5 → 26.5 at 5,000).
                    // A large client message then takes more reads: +24 % server CPU on
                    // 100 KiB messages (~+40 µs each), none measurable on 2 KiB ones
                    // (bench/README.md, inbound.mjs).
                    .ws_read_buffer_size(1024)
                    .connect_timeout(connect_timeout)
                    .ping_interval(config.ping_interval)
                    .ping_timeout(config.ping_timeout)
                    .build_layer();
                natter_socketio::attach(&io, core.clone(), config.socketio.clone());
                let router = router
                    .layer(layer)
                    // Before socketioxide sees the request: an idle socket then no longer pins
                    // hyper's read buffer (39.8 → 32.0 KiB RSS per idle socket at 5,000,
                    // bench/README.md).
                    .layer(axum::middleware::map_request(socketio_head::detach));
                (SocketIoServer::Socketioxide(io), router)
            }
        }
    }

    /// Closes every Socket.IO connection (shutdown).
    async fn close(&self) {
        match self {
            SocketIoServer::Natter(engine) => {
                engine.close_all();
                // Each session's task writes what it queued and the close packet, then leaves
                // the engine; give them a moment before the process exits.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                while engine.session_count() > 0 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            SocketIoServer::Socketioxide(io) => io.close().await,
        }
    }
}

/// A built server, not yet listening.
pub struct Server {
    pub config: ServerConfig,
    pub core: ChatCore,
    io: Arc<SocketIoServer>,
    http_shutdown: CancellationToken,
    router: Router,
}

fn provider(config: &ServerConfig) -> anyhow::Result<Arc<dyn Provider>> {
    let base_url = match config.provider {
        ProviderKind::Anthropic => &config.anthropic_base_url,
        _ => &config.openai_base_url,
    };
    build_provider(
        config.provider,
        base_url,
        config.api_key.clone(),
        &config.local_model,
        config.core.attachments.vision,
    )
}

fn build_provider(
    kind: ProviderKind,
    base_url: &str,
    api_key: Option<String>,
    local: &config::LocalModelConfig,
    vision: bool,
) -> anyhow::Result<Arc<dyn Provider>> {
    Ok(match kind {
        ProviderKind::Demo => Arc::new(DemoProvider::default()),
        ProviderKind::Local => local_provider(local)?,
        ProviderKind::OpenAi => Arc::new(
            OpenAiProvider::new(base_url, api_key, Duration::from_secs(10))
                .map_err(anyhow::Error::msg)?
                .with_vision(vision),
        ),
        ProviderKind::Anthropic => Arc::new(
            AnthropicProvider::new(base_url, api_key, Duration::from_secs(10))
                .map_err(anyhow::Error::msg)?
                .with_vision(vision),
        ),
    })
}

/// The config's agents on their providers, each provider built once (CONTRACT §7.5).
fn agents(config: &ServerConfig, tools: &ToolRegistry) -> anyhow::Result<Agents> {
    let mut built: Vec<(&str, Arc<dyn Provider>)> = Vec::new();
    for spec in &config.providers {
        let p = build_provider(
            spec.kind,
            &spec.base_url,
            spec.api_key.clone(),
            &config.local_model,
            config.core.attachments.vision,
        )
        .with_context(|| format!("provider `{}`", spec.name))?;
        built.push((&spec.name, p));
    }
    let mut list = Vec::new();
    for a in &config.agents {
        // An embedding app's own tools count too.
        if let Some(names) = &a.tools
            && let Some(missing) = names.iter().find(|n| tools.get(n).is_none())
        {
            anyhow::bail!("agent `{}`: unknown tool `{missing}`", a.id);
        }
        let provider = match &a.provider {
            None => None,
            Some(name) => Some(
                built
                    .iter()
                    .find(|(n, _)| *n == name.as_str())
                    .map(|(_, p)| p.clone())
                    .with_context(|| format!("agent `{}`: unknown provider `{name}`", a.id))?,
            ),
        };
        list.push(Agent {
            id: a.id.clone(),
            name: a.name.clone(),
            description: a.description.clone(),
            system_prompt: Some(a.system_prompt.clone()),
            provider,
            model: Some(a.model.clone()),
            tools: a.tools.clone(),
            temperature: a.temperature,
        });
    }
    Agents::new(list).map_err(anyhow::Error::msg)
}

#[cfg(feature = "local-model")]
fn local_provider(c: &config::LocalModelConfig) -> anyhow::Result<Arc<dyn Provider>> {
    use natter_local_model::{LocalOptions, LocalProvider, SamplingOptions};
    let started = std::time::Instant::now();
    let defaults = LocalOptions::default();
    let sampling = defaults.sampling;
    let options = LocalOptions {
        workers: c.workers.unwrap_or(defaults.workers),
        default_max_tokens: c.max_tokens.unwrap_or(defaults.default_max_tokens),
        sampling: SamplingOptions {
            temperature: c.temperature.unwrap_or(sampling.temperature),
            top_p: c.top_p.unwrap_or(sampling.top_p),
            seed: c.seed.unwrap_or(sampling.seed),
            ..sampling
        },
        threads: c.threads.unwrap_or(defaults.threads),
        chat_template: c.chat_template.clone(),
        gpu_layers: c.gpu_layers.unwrap_or(defaults.gpu_layers),
        ..defaults
    };
    let provider = LocalProvider::load(&c.path, options)
        .map_err(|e| anyhow::anyhow!("loading the local model {}: {e}", c.path.display()))?;
    tracing::info!(
        path = %c.path.display(),
        ms = started.elapsed().as_millis() as u64,
        "local model loaded"
    );
    Ok(Arc::new(provider))
}

#[cfg(not(feature = "local-model"))]
fn local_provider(_: &config::LocalModelConfig) -> anyhow::Result<Arc<dyn Provider>> {
    anyhow::bail!("this build has no local model (it was built without the `local-model` feature)")
}

/// The tools the config enables, on top of `extra` (an embedding app's own).
fn tools(config: &ServerConfig, mut registry: ToolRegistry) -> anyhow::Result<ToolRegistry> {
    let t = &config.tools;
    if t.current_time {
        registry.register(Arc::new(natter_tools::CurrentTime));
    }
    if let Some(allow) = &t.http_get_allow {
        let limits = natter_tools::HttpGetLimits {
            allow: allow.clone(),
            ..Default::default()
        };
        registry.register(Arc::new(
            natter_tools::HttpGet::new(limits).map_err(anyhow::Error::msg)?,
        ));
    }
    for spec in &t.client {
        registry.declare_client(spec.clone());
    }
    Ok(registry)
}

/// PDFs are read by this binary re-executed as `natter extract-document` (see
/// [`extractor`]); where the binary cannot be found, in process (no hard bounds).
fn extractor(config: &ServerConfig) -> Arc<dyn natter_core::processing::DocumentExtractor> {
    match extractor::ChildProcessExtractor::from_current_exe(
        config.extract_timeout,
        config.extract_memory_bytes,
    ) {
        Ok(x) => Arc::new(x),
        Err(e) => {
            tracing::warn!(error = %e, "cannot find the natter binary; documents are read in process, without time and memory bounds");
            Arc::new(natter_core::processing::InProcessExtractor {
                timeout: config.extract_timeout,
                ..Default::default()
            })
        }
    }
}

impl Server {
    pub async fn build(config: ServerConfig) -> anyhow::Result<Self> {
        Self::build_with_tools(config, ToolRegistry::default()).await
    }

    /// Builds with `extra` tools besides those the config enables: how an app embedding
    /// Natter gives the model its own server-run tools (see `examples/custom-tool`).
    pub async fn build_with_tools(
        config: ServerConfig,
        extra: ToolRegistry,
    ) -> anyhow::Result<Self> {
        let store = store::open_store(&config).await?;
        let (bus, presence, coordinator) = cluster::open_cluster(&config).await?;
        let tools = tools(&config, extra)?;
        let seams = Seams {
            store,
            bus,
            presence,
            provider: provider(&config)?,
            coordinator,
            agents: agents(&config, &tools)?,
            tools,
            extractor: extractor(&config),
        };
        Self::build_from_seams(config, seams)
    }

    /// Builds on seams the caller chose: an embedding app's own Store, Bus, Presence,
    /// Coordinator or Provider (the settings for those are then ignored).
    pub fn build_from_seams(config: ServerConfig, seams: Seams) -> anyhow::Result<Self> {
        let bus = seams.bus.clone();
        let core = ChatCore::from_seams(config.core.clone(), seams);
        let ops = ops::Ops::new(core.clone(), bus)?;
        let http_shutdown = CancellationToken::new();
        // The document covers what `ops` and natter-http mount (the same `routes!` lists);
        // Socket.IO and the playground's pages are not HTTP APIs and are left out.
        let (ops_router, ops_document) = ops.clone().routes();
        let (http_router, mut document) =
            natter_http::routes(core.clone(), config.http.clone(), http_shutdown.clone());
        document.merge(ops_document);
        ops.set_document(&document)?;
        let router = ops_router.merge(http_router).merge(playground::router());
        let (io, router) = SocketIoServer::build(&config, &core, router);
        let router = router
            // After routing (the route is known), around every handler.
            .layer(axum::middleware::from_fn(otel::http_span));
        let router = origin::guard(router, &config.allowed_origins);
        Ok(Self {
            config,
            core,
            io: Arc::new(io),
            http_shutdown,
            router,
        })
    }

    /// The server's routes (Socket.IO, the HTTP faces, operations), to merge into an app's own
    /// axum router. Whoever serves them calls [`ChatCore::shutdown`] on the way out.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves on `config.listen` until `shutdown` resolves, then ends running turns with
    /// `ai:error` code `shutdown` (keeping partial text) and closes every connection.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(&self.config.listen)
            .await
            .with_context(|| format!("binding {}", self.config.listen))?;
        let addr: SocketAddr = listener.local_addr()?;
        tracing::info!(%addr, provider = self.core.provider_name(), database = %store::redact(&self.config.database), auth = ?self.config.auth_mode, "natter listening");
        if self.config.auth_mode == natter_auth::AuthMode::Off {
            tracing::warn!(
                "auth is off: clients say who they are. Set NATTER_JWT_SECRET before exposing this server"
            );
        }
        // Tests and scripts read this line to find the port when listening on :0.
        println!("natter listening on http://{addr}");
        let core = self.core.clone();
        let io = self.io.clone();
        let http_shutdown = self.http_shutdown.clone();
        let grace = self.config.shutdown_grace;
        let stop = async move {
            shutdown.await;
            tracing::info!("shutting down: ending running turns");
            core.shutdown(grace).await;
            // Let the final events reach the sockets before closing them.
            tokio::time::sleep(Duration::from_millis(100)).await;
            http_shutdown.cancel();
            io.close().await;
        };
        // Tokens are small writes that must leave at once: without TCP_NODELAY, Nagle's
        // algorithm holds one behind an unacknowledged write for up to a delayed-ACK (40 ms).
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        // The orphan sweep (CONTRACT §7.6): attachments no message refers to, once they are
        // older than `--attachment-orphan-secs`. Hourly, on every node (the stores' deletes
        // are safe to run at once); it ends with the process.
        let sweeper = {
            let core = self.core.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(3600));
                loop {
                    tick.tick().await;
                    match core.delete_orphan_attachments(None).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "deleted orphan attachments"),
                        Err(e) => tracing::warn!(error = %e, "orphan attachment sweep failed"),
                    }
                }
            })
        };
        let _sweeper = AbortOnDrop(sweeper);
        // The peer address feeds the per-address limits.
        let app = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
            .context("serving")?;
        Ok(())
    }
}

/// Aborts a background task when the server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `natter attachments gc`: deletes attachments of the database at `url` that no message
/// refers to and that are older than `older_than`. Returns how many.
pub async fn gc_attachments(url: &str, older_than: Duration) -> anyhow::Result<u64> {
    let options = store::StoreOptions {
        sqlite_durability: Default::default(),
        max_connections: None,
    };
    let store = store::open_transfer(url, &options).await?;
    let cutoff = natter_protocol::time::now_millis()
        .saturating_sub(older_than.as_millis().min(i64::MAX as u128) as i64);
    let mut total = 0;
    loop {
        let n = store.delete_orphan_attachments(cutoff, 500).await?;
        total += n;
        if n < 500 {
            return Ok(total);
        }
    }
}
