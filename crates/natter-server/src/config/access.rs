//! Who may connect and how often: authentication, allowed browser origins, rate limits.

use std::time::Duration;

use anyhow::bail;
use natter_auth::{AuthConfig, AuthMode};
use natter_core::limits::{LimitsConfig, ScopedRate};

use super::Settings;
use super::bounds::{HOUR, at_most};

pub(super) fn auth_config(s: &Settings) -> anyhow::Result<AuthConfig> {
    let secret = s.jwt_secret.clone().filter(|v| !v.is_empty());
    let mode = match s.auth.as_deref() {
        Some("on") => AuthMode::On,
        Some("off") => AuthMode::Off,
        Some(other) => bail!("auth must be `on` or `off`, got `{other}`"),
        None if secret.is_some() => AuthMode::On,
        None => AuthMode::Off,
    };
    let defaults = AuthConfig::default();
    Ok(AuthConfig {
        mode,
        secret,
        issuer: s.jwt_issuer.clone().filter(|v| !v.is_empty()),
        audience: s.jwt_audience.clone().filter(|v| !v.is_empty()),
        leeway: match s.jwt_leeway_secs {
            Some(v) => Duration::from_secs(at_most("jwt_leeway_secs", v, HOUR)?),
            None => defaults.leeway,
        },
        required_scope: s.jwt_required_scope.clone().filter(|v| !v.is_empty()),
    })
}

pub(super) fn limits_config(s: &Settings) -> LimitsConfig {
    let d = LimitsConfig::default();
    LimitsConfig {
        messages: ScopedRate {
            per_connection: s
                .message_rate_per_connection
                .unwrap_or(d.messages.per_connection),
            per_user: s.message_rate_per_user.unwrap_or(d.messages.per_user),
            per_ip: s.message_rate_per_ip.unwrap_or(d.messages.per_ip),
        },
        turns: ScopedRate {
            per_connection: s.turn_rate_per_connection.unwrap_or(d.turns.per_connection),
            per_user: s.turn_rate_per_user.unwrap_or(d.turns.per_user),
            per_ip: s.turn_rate_per_ip.unwrap_or(d.turns.per_ip),
        },
        max_connections_per_user: s
            .max_connections_per_user
            .unwrap_or(d.max_connections_per_user),
        max_connections_per_ip: s.max_connections_per_ip.unwrap_or(d.max_connections_per_ip),
        uploads_per_user: s
            .attachment_uploads_per_minute
            .unwrap_or(d.uploads_per_user),
    }
}

/// Origins as browsers send them: scheme, host and port, no path or trailing slash.
pub(super) fn origins(list: Option<Vec<String>>) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for o in list.unwrap_or_default() {
        let o = o.trim().trim_end_matches('/').to_owned();
        if o.is_empty() {
            continue;
        }
        let rest = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.contains('/')) {
            bail!("allowed_origins takes origins like `https://app.example.com`, got `{o}`");
        }
        out.push(o);
    }
    Ok(out)
}
