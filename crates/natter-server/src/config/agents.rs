//! `[[providers]]` and `[[agents]]`, resolved against the server's own provider, keys and
//! tools.

use anyhow::{Context, bail};
use natter_core::CoreConfig;

use super::{
    AgentSetting, ApiKeys, DEFAULT_ANTHROPIC_BASE_URL, DEFAULT_ANTHROPIC_MODEL,
    DEFAULT_OPENAI_BASE_URL, LocalModelConfig, ProviderKind, ProviderSetting, ToolsConfig,
};

/// One provider besides the server's own, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSpec {
    /// The name agents use: a `[[providers]]` name, or a built-in kind's name.
    pub name: String,
    pub kind: ProviderKind,
    /// The API's base URL (unused by `local` and `demo`).
    pub base_url: String,
    pub api_key: Option<String>,
    /// The `api_key_env` it was declared with (for `--print-config`).
    pub api_key_env: Option<String>,
    /// Declared in `[[providers]]` (else a built-in kind on the server's settings).
    pub declared: bool,
}

/// One agent, resolved: `provider` is `None` for the server's own provider, else the name
/// of one of [`ServerConfig::providers`].
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub system_prompt: String,
    pub provider: Option<String>,
    /// The model its turns ask for.
    pub model: String,
    pub tools: Option<Vec<String>>,
    pub temperature: Option<f32>,
}

const BUILT_IN_PROVIDERS: [&str; 4] = ["openai", "anthropic", "local", "demo"];

/// Whether `s` is usable as an id or name in the file: 1-128 characters, no control
/// characters, not only whitespace.
fn plain_name(s: &str) -> bool {
    !s.trim().is_empty() && s.chars().count() <= 128 && !s.chars().any(char::is_control)
}

/// Resolves `[[providers]]` and `[[agents]]`: every provider an agent names exists, every
/// tool it names is one of the server's, and ids are unique.
#[allow(clippy::too_many_arguments)]
pub(super) fn agents_config(
    providers: Option<Vec<ProviderSetting>>,
    agents: Option<Vec<AgentSetting>>,
    server: ProviderKind,
    server_model: &str,
    keys: &ApiKeys,
    openai_base_url: &str,
    anthropic_base_url: &str,
    local_model: &LocalModelConfig,
    tools: &ToolsConfig,
) -> anyhow::Result<(Vec<ProviderSpec>, Vec<AgentConfig>)> {
    let mut declared: Vec<ProviderSpec> = Vec::new();
    for p in providers.unwrap_or_default() {
        let name = p.name.trim().to_owned();
        if !plain_name(&name) {
            bail!("providers: a provider needs a `name` (1-128 characters)");
        }
        if BUILT_IN_PROVIDERS.contains(&name.as_str()) {
            bail!(
                "providers: `{name}` is a built-in provider name (openai, anthropic, local, demo); give this one another name"
            );
        }
        if declared.iter().any(|d| d.name == name) {
            bail!("providers: two providers are named `{name}`");
        }
        let kind = match p.kind.as_str() {
            "openai" => ProviderKind::OpenAi,
            "anthropic" => ProviderKind::Anthropic,
            "demo" => ProviderKind::Demo,
            "local" => bail!(
                "provider `{name}`: kind `local` is the server's one local model; agents name it as provider = \"local\""
            ),
            other => bail!(
                "provider `{name}`: kind must be `openai`, `anthropic` or `demo`, got `{other}`"
            ),
        };
        let default_url = match kind {
            ProviderKind::Anthropic => DEFAULT_ANTHROPIC_BASE_URL,
            _ => DEFAULT_OPENAI_BASE_URL,
        };
        let base_url = p.base_url.clone().unwrap_or_else(|| default_url.to_owned());
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            bail!("provider `{name}`: base_url must be an http(s) URL, got `{base_url}`");
        }
        let api_key = match &p.api_key_env {
            Some(var) => Some(
                std::env::var(var)
                    .ok()
                    .filter(|k| !k.is_empty())
                    .with_context(|| {
                        format!(
                            "provider `{name}`: the environment variable `{var}` (api_key_env) is not set"
                        )
                    })?,
            ),
            None => match kind {
                ProviderKind::OpenAi => keys.openai.clone(),
                ProviderKind::Anthropic => keys.anthropic.clone(),
                _ => None,
            },
        };
        if kind == ProviderKind::Anthropic
            && api_key.is_none()
            && base_url.trim_end_matches('/') == DEFAULT_ANTHROPIC_BASE_URL
        {
            bail!(
                "provider `{name}`: no API key for the Anthropic API (set ANTHROPIC_API_KEY, or api_key_env)"
            );
        }
        declared.push(ProviderSpec {
            name,
            kind,
            base_url,
            api_key,
            api_key_env: p.api_key_env,
            declared: true,
        });
    }
    let mut specs: Vec<ProviderSpec> = declared.clone();
    let mut out: Vec<AgentConfig> = Vec::new();
    let mut server_tools: Vec<&str> = Vec::new();
    if tools.current_time {
        server_tools.push("current_time");
    }
    if tools.http_get_allow.is_some() {
        server_tools.push("http_get");
    }
    server_tools.extend(tools.client.iter().map(|t| t.name.as_str()));
    let known_providers = || {
        let mut names: Vec<String> = BUILT_IN_PROVIDERS.iter().map(|s| s.to_string()).collect();
        names.extend(declared.iter().map(|d| d.name.clone()));
        names.join(", ")
    };
    for a in agents.unwrap_or_default() {
        let id = a.id.trim().to_owned();
        if !plain_name(&id) || id.len() > natter_protocol::fields::MAX_ID_BYTES {
            bail!(
                "agents: an agent needs an `id` of 1-{} bytes",
                natter_protocol::fields::MAX_ID_BYTES
            );
        }
        if out.iter().any(|b| b.id == id) {
            bail!("agents: two agents have the id `{id}`");
        }
        if !plain_name(&a.name) {
            bail!("agent `{id}`: `name` must be 1-128 characters");
        }
        if let Some(t) = a.temperature
            && !(t.is_finite() && (0.0..=2.0).contains(&t))
        {
            bail!("agent `{id}`: temperature must be between 0 and 2, got {t}");
        }
        if let Some(list) = &a.tools {
            for t in list {
                if !server_tools.contains(&t.as_str()) {
                    bail!(
                        "agent `{id}`: unknown tool `{t}` (the server's tools: {}; enable built-ins with `tools`, declare client-run ones with [[client_tools]])",
                        if server_tools.is_empty() {
                            "none".to_owned()
                        } else {
                            server_tools.join(", ")
                        }
                    );
                }
            }
        }
        // Which provider, and its kind (for the default model).
        let (provider, kind) = match a.provider.as_deref().map(str::trim) {
            None => (None, server),
            Some(name) if name == server.as_str() => (None, server),
            Some(name) => {
                if let Some(d) = declared.iter().find(|d| d.name == name) {
                    (Some(name.to_owned()), d.kind)
                } else {
                    let kind = match name {
                        "openai" => ProviderKind::OpenAi,
                        "anthropic" => ProviderKind::Anthropic,
                        "local" => ProviderKind::Local,
                        "demo" => ProviderKind::Demo,
                        other => bail!(
                            "agent `{id}`: unknown provider `{other}` (known: {}; declare more with [[providers]])",
                            known_providers()
                        ),
                    };
                    if !specs.iter().any(|s| s.name == name) {
                        let (base_url, api_key) = match kind {
                            ProviderKind::OpenAi => {
                                (openai_base_url.to_owned(), keys.openai.clone())
                            }
                            ProviderKind::Anthropic => {
                                (anthropic_base_url.to_owned(), keys.anthropic.clone())
                            }
                            _ => (String::new(), None),
                        };
                        if kind == ProviderKind::Anthropic
                            && api_key.is_none()
                            && base_url.trim_end_matches('/') == DEFAULT_ANTHROPIC_BASE_URL
                        {
                            bail!(
                                "agent `{id}`: provider `anthropic` needs ANTHROPIC_API_KEY (or --anthropic-base-url to a local endpoint)"
                            );
                        }
                        if kind == ProviderKind::Local && !local_model.path.is_file() {
                            bail!(
                                "agent `{id}`: provider `local`: no model file at {} (run `natter model pull`)",
                                local_model.path.display()
                            );
                        }
                        specs.push(ProviderSpec {
                            name: name.to_owned(),
                            kind,
                            base_url,
                            api_key,
                            api_key_env: None,
                            declared: false,
                        });
                    }
                    (Some(name.to_owned()), kind)
                }
            }
        };
        let model = match (&a.model, &provider) {
            (Some(m), _) => m.clone(),
            (None, None) => server_model.to_owned(),
            (None, Some(_)) => default_model(kind),
        };
        out.push(AgentConfig {
            id,
            name: a.name,
            description: a.description.filter(|d| !d.is_empty()),
            system_prompt: a.system_prompt,
            provider,
            model,
            tools: a.tools,
            temperature: a.temperature,
        });
    }
    // Only providers some agent uses are built.
    specs.retain(|s| out.iter().any(|a| a.provider.as_deref() == Some(&s.name)) || s.declared);
    Ok((specs, out))
}

/// The model a provider kind uses when nothing names one.
pub(super) fn default_model(kind: ProviderKind) -> String {
    match kind {
        ProviderKind::Demo => "demo".into(),
        ProviderKind::Local => "SmolLM2-135M-Instruct".into(),
        ProviderKind::OpenAi => CoreConfig::default().model,
        ProviderKind::Anthropic => DEFAULT_ANTHROPIC_MODEL.into(),
    }
}
