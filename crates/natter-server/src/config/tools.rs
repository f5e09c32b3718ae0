//! Which tools turns may call: the built-ins `--tools` enables and `[[client_tools]]`.

use anyhow::bail;
use natter_core::provider::ToolSpec;

use super::ClientToolSetting;

/// Which tools turns may call.
#[derive(Debug, Clone, Default)]
pub struct ToolsConfig {
    pub current_time: bool,
    /// `Some` (with its allow-list) when `http_get` is enabled.
    pub http_get_allow: Option<Vec<String>>,
    pub client: Vec<ToolSpec>,
}

pub(super) fn tools_config(
    tools: Option<Vec<String>>,
    http_get_allow: Option<Vec<String>>,
    client: Option<Vec<ClientToolSetting>>,
) -> anyhow::Result<ToolsConfig> {
    let mut cfg = ToolsConfig::default();
    for name in tools.unwrap_or_default() {
        match name.trim() {
            "" => {}
            "current_time" => cfg.current_time = true,
            "http_get" => {
                let allow: Vec<String> = http_get_allow
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect();
                if allow.is_empty() {
                    bail!(
                        "the http_get tool needs http_get_allow (--http-get-allow) with at least one URL prefix"
                    );
                }
                for p in &allow {
                    if !(p.starts_with("https://") || p.starts_with("http://")) {
                        bail!(
                            "http_get_allow (--http-get-allow) takes http(s) URL prefixes, got `{p}`"
                        );
                    }
                }
                cfg.http_get_allow = Some(allow);
            }
            other => {
                bail!("tools: unknown tool `{other}` (built-in tools: current_time, http_get)")
            }
        }
    }
    for t in client.unwrap_or_default() {
        if !natter_core::tools::valid_tool_name(&t.name) {
            bail!(
                "client tool name `{}` must be 1-64 letters, digits, `_` or `-`",
                t.name
            );
        }
        let parameters = t
            .parameters
            .unwrap_or_else(|| serde_json::json!({"type": "object"}));
        if !parameters.is_object() {
            bail!(
                "client tool `{}`: parameters must be a JSON Schema object",
                t.name
            );
        }
        // A bad schema would fail every call at run time.
        natter_core::tools::check_schema(&parameters).map_err(|e| {
            anyhow::anyhow!(
                "client tool `{}`: the tool's own schema is invalid: {e}",
                t.name
            )
        })?;
        cfg.client.push(ToolSpec {
            name: t.name,
            description: t.description,
            parameters,
        });
    }
    Ok(cfg)
}
