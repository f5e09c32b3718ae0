//! Natter inside your own axum app, with a tool of your own that the model can call.
//!
//! ```sh
//! OPENAI_API_KEY=sk-… cargo run -p natter-example-custom-tool -- --provider openai
//! ```
//! Then ask, from any client, "what is the stock of item A-42?": the model calls
//! `inventory_lookup`, Socket.IO members see `ai:tool_call` / `ai:tool_result`, and the reply
//! uses the result. Every `natter serve` flag works here too (`--help`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::routing::get;
use clap::Parser;
use natter_core::provider::ToolSpec;
use natter_core::tools::{Tool, ToolRegistry};
use natter_server::config::Settings;
use natter_server::{ApiKeys, Server, ServerConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The app's own tool: a lookup in its (here, pretend) inventory.
struct InventoryLookup;

#[async_trait]
impl Tool for InventoryLookup {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "inventory_lookup".into(),
            description: "Units in stock for an item id such as A-42.".into(),
            parameters: json!({
                "type": "object",
                "properties": {"itemId": {"type": "string", "pattern": "^[A-Z]-[0-9]+$"}},
                "required": ["itemId"],
                "additionalProperties": false
            }),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    async fn run(&self, input: Value, _cancel: CancellationToken) -> Result<Value, String> {
        // The input already matches the schema; a real app would query its database here.
        let id = input["itemId"].as_str().unwrap_or_default();
        let stock = id.bytes().map(u64::from).sum::<u64>() % 50;
        Ok(json!({"itemId": id, "inStock": stock}))
    }
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    settings: Settings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let keys = ApiKeys {
        openai: std::env::var("OPENAI_API_KEY").ok(),
        anthropic: std::env::var("ANTHROPIC_API_KEY").ok(),
    };
    let config = ServerConfig::resolve(args.settings, keys)?;
    let listen = config.listen.clone();

    let mut tools = ToolRegistry::default();
    tools.register(Arc::new(InventoryLookup));
    let natter = Server::build_with_tools(config, tools).await?;

    // Natter's routes next to the app's own.
    let app = natter
        .router()
        .route("/hello", get(|| async { "my app, with Natter inside" }));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let core = natter.core.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            core.shutdown(Duration::from_secs(5)).await;
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_tool_answers_valid_input() {
        let out = InventoryLookup
            .run(json!({"itemId": "A-42"}), CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(out["itemId"], "A-42");
        assert!(out["inStock"].as_u64().unwrap() < 50);
    }
}
