//! Tools the model may call during a turn.
//!
//! - **Server-run tools** implement [`Tool`] and are registered in a [`ToolRegistry`] by
//!   whoever builds the core (built-ins enabled by config, or an app embedding Natter).
//! - **Client-run tools** are only declared here ([`ToolRegistry::declare_client`]): the turn
//!   sends the call to the chat and waits for a member's result.
//!
//! The turn validates the model's arguments (JSON, then the tool's JSON Schema) before
//! running anything; a mismatch goes back to the model as the tool's error, never a crash.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::provider::ToolSpec;

/// A tool the server runs.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// Name, description and the JSON Schema of the input.
    fn spec(&self) -> ToolSpec;

    /// How long one run may take before it counts as failed.
    fn timeout(&self) -> Duration {
        Duration::from_secs(30)
    }

    /// Runs with input that already matches the schema. `cancel` fires when the turn is
    /// aborted or times out; a tool doing slow work should stop then. `Err` is a message
    /// for the model.
    async fn run(&self, input: Value, cancel: CancellationToken) -> Result<Value, String>;
}

/// Who runs a tool.
#[derive(Clone)]
pub enum Executor {
    Server(Arc<dyn Tool>),
    Client(ToolSpec),
}

impl Executor {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Server(_) => "server",
            Self::Client(_) => "client",
        }
    }

    pub fn spec(&self) -> ToolSpec {
        match self {
            Self::Server(t) => t.spec(),
            Self::Client(s) => s.clone(),
        }
    }
}

/// The tools offered to the model, by name.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Executor>,
}

impl ToolRegistry {
    /// Adds (or replaces) a server-run tool.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> &mut Self {
        self.tools
            .insert(tool.spec().name.clone(), Executor::Server(tool));
        self
    }

    /// Declares a tool that a member of the chat runs (`executor: "client"`).
    pub fn declare_client(&mut self, spec: ToolSpec) -> &mut Self {
        self.tools.insert(spec.name.clone(), Executor::Client(spec));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Executor> {
        self.tools.get(name)
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(Executor::spec).collect()
    }
}

/// Checks the model's arguments: valid JSON, then valid against `schema`. The error is
/// written for the model, so it can correct itself.
pub fn check_arguments(raw: &str, schema: &Value) -> Result<Value, String> {
    let raw = if raw.trim().is_empty() { "{}" } else { raw };
    let input: Value = serde_json::from_str(raw)
        .map_err(|e| format!("the arguments are not valid JSON ({e}); send a JSON object"))?;
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| format!("the tool's own schema is invalid: {e}"))?;
    let problems: Vec<String> = validator
        .iter_errors(&input)
        .take(5)
        .map(|e| format!("{} at `{}`", e, e.instance_path))
        .collect();
    if problems.is_empty() {
        Ok(input)
    } else {
        Err(format!(
            "the arguments do not match the tool's schema: {}",
            problems.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_are_checked_against_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"],
            "additionalProperties": false,
        });
        assert_eq!(
            check_arguments(r#"{"zone":"UTC"}"#, &schema).unwrap(),
            json!({"zone": "UTC"})
        );
        let bad_json = check_arguments("{zone:", &schema).unwrap_err();
        assert!(bad_json.contains("not valid JSON"), "{bad_json}");
        let missing = check_arguments("{}", &schema).unwrap_err();
        assert!(missing.contains("zone"), "{missing}");
        let wrong_type = check_arguments(r#"{"zone":5}"#, &schema).unwrap_err();
        assert!(wrong_type.contains("string"), "{wrong_type}");
        // Empty arguments read as an empty object (some models send "" for no input).
        assert!(check_arguments("", &json!({"type": "object"})).is_ok());
    }
}
