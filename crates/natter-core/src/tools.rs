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

use natter_protocol::{ErrorCode, WireError};

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

/// Most tools a client may declare for one message.
pub const MAX_DECLARED_TOOLS: usize = 32;

/// Names a tool may have: what the OpenAI and Anthropic APIs accept.
pub fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Client-run tools a client declares for one message: `[{name, description?, parameters?}]`
/// (`parameters` a JSON Schema, default any object). Errors name the bad entry.
pub fn parse_declared(tools: &Value) -> Result<Vec<ToolSpec>, WireError> {
    let invalid = |m: String| WireError::new(ErrorCode::InvalidField, m);
    let Value::Array(items) = tools else {
        return Err(invalid("`tools` must be an array".into()));
    };
    if items.len() > MAX_DECLARED_TOOLS {
        return Err(WireError::new(
            ErrorCode::TooLarge,
            format!("at most {MAX_DECLARED_TOOLS} tools per message"),
        ));
    }
    let mut specs: Vec<ToolSpec> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = item.get("name").and_then(Value::as_str).unwrap_or("");
        if !valid_tool_name(name) {
            return Err(invalid(format!(
                "`tools[{i}].name` must be 1-64 letters, digits, `_` or `-`"
            )));
        }
        if specs.iter().any(|s| s.name == name) {
            return Err(invalid(format!("`tools[{i}]`: `{name}` is declared twice")));
        }
        let description = match item.get("description") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(d)) => d.clone(),
            Some(_) => {
                return Err(invalid(format!(
                    "`tools[{i}].description` must be a string"
                )));
            }
        };
        let parameters = match item.get("parameters").or_else(|| item.get("inputSchema")) {
            None | Some(Value::Null) => serde_json::json!({"type": "object"}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(invalid(format!(
                    "`tools[{i}].parameters` must be a JSON Schema object"
                )));
            }
        };
        if let Err(e) = check_schema(&parameters) {
            return Err(invalid(format!(
                "`tools[{i}].parameters` is not a valid JSON Schema: {e}"
            )));
        }
        specs.push(ToolSpec {
            name: name.to_owned(),
            description,
            parameters,
        });
    }
    Ok(specs)
}

/// Whether `schema` is a JSON Schema that arguments can be checked against; the error says
/// why not. A tool declared with a bad schema would fail every call, so declarations are
/// checked up front.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    jsonschema::validator_for(schema)
        .map(|_| ())
        .map_err(|e| e.to_string())
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
    fn declared_tools_are_checked() {
        let ok = parse_declared(&json!([
            {"name": "pick_color", "description": "Ask", "parameters": {"type": "object"}},
            {"name": "confirm"}
        ]))
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].parameters, json!({"type": "object"}));
        for bad in [
            json!({}),
            json!([{"name": "has space"}]),
            json!([{"name": "a"}, {"name": "a"}]),
            json!([{"name": "a", "description": 5}]),
            json!([{"name": "a", "parameters": "x"}]),
            json!([{"name": "a", "parameters": {"type": 5}}]),
        ] {
            assert!(parse_declared(&bad).is_err(), "{bad}");
        }
    }

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
