//! Who a connection or request is (CONTRACT §5): HS256 JWTs, verified with `jsonwebtoken`.
//!
//! Every face asks an [`Authenticator`] once per connection (Socket.IO, SSE, WebSocket) or
//! per request (POSTs). With auth on, the org and user come from the token's claims and
//! nothing else; with auth off (development) there is no token and the faces take identity
//! hints from the handshake or body, as before.
//!
//! What a token must be: `alg` HS256 (pinned: `none` and every other algorithm are refused),
//! signed with the configured secret, with `exp` (and `nbf` when present) checked with a small
//! leeway, `iss`/`aud` checked when configured, and the claims `org_id`, `user_id` and
//! optionally `scopes`. The scope `chat:admin` lets a user see and manage every chat of its org.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use natter_core::Identity;
use natter_core::chat::ClientType;
use natter_protocol::fields::check_id_field;
use natter_protocol::{ErrorCode, WireError};
use serde::{Deserialize, Serialize};

/// The scope that grants every chat of the token's org (lists, member-only chats).
pub const ADMIN_SCOPE: &str = "chat:admin";
/// The scope a deployment usually requires to connect at all (`--jwt-required-scope`).
pub const CONNECT_SCOPE: &str = "chat:connect";
/// Shortest accepted secret: HS256 keys shorter than its 256-bit output are guessable offline.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Development: no tokens; identity comes from the handshake or body, org `default`.
    Off,
    /// No valid token, no connection and no request.
    On,
}

#[derive(Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub secret: Option<String>,
    /// Checked when set: the token's `iss` must equal it.
    pub issuer: Option<String>,
    /// Checked when set: the token's `aud` must contain it.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Checked when set: the token's `scopes` must contain it (e.g. `chat:connect`).
    pub required_scope: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Off,
            secret: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
            required_scope: None,
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("mode", &self.mode)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("required_scope", &self.required_scope)
            .finish()
    }
}

/// The claims Natter reads and [`mint`] writes. `scopes` may also arrive as one
/// space-separated string (the OAuth `scope` habit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub org_id: String,
    pub user_id: String,
    #[serde(
        default,
        deserialize_with = "scopes",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Expiry, seconds since the Unix epoch. Required.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// `customer`, `humanAgent` or `observer` (CONTRACT §7.1); absent: see [`client_type`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_type: Option<String>,
}

fn scopes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scopes {
        List(Vec<String>),
        Spaced(String),
    }
    Ok(match Option::<Scopes>::deserialize(d)? {
        None => Vec::new(),
        Some(Scopes::List(v)) => v,
        Some(Scopes::Spaced(s)) => s.split_whitespace().map(str::to_owned).collect(),
    })
}

/// The part of the claims Natter uses once `jsonwebtoken` has checked the rest (`aud` may be
/// a string or an array there, so it is not read here).
#[derive(Deserialize)]
struct VerifiedClaims {
    org_id: String,
    user_id: String,
    #[serde(default, deserialize_with = "scopes")]
    scopes: Vec<String>,
    exp: u64,
    /// Seed 002's `clientType` (CONTRACT §7.1), checked against the scopes when used.
    #[serde(default)]
    client_type: Option<String>,
}

/// A verified token's holder.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub identity: Identity,
    pub scopes: Vec<String>,
    /// When the token stops being accepted (its `exp` plus the leeway), Unix seconds.
    pub expires_at: u64,
    /// The token's `client_type` claim, as written (see [`client_type`]).
    pub client_type: Option<String>,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// How long until the token stops being accepted (zero if it already has).
    pub fn remaining(&self) -> Duration {
        Duration::from_secs(self.expires_at).saturating_sub(now())
    }
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Checks tokens. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    mode: AuthMode,
    verify: Option<std::sync::Arc<(DecodingKey, Validation)>>,
    required_scope: Option<String>,
    leeway: Duration,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("mode", &self.mode)
            .field("required_scope", &self.required_scope)
            .finish()
    }
}

impl Authenticator {
    /// Auth off: [`Self::verify`] is never needed; faces take identity hints.
    pub fn off() -> Self {
        Self {
            mode: AuthMode::Off,
            verify: None,
            required_scope: None,
            leeway: Duration::ZERO,
        }
    }

    /// Refuses a configuration that cannot work, with a message for the operator.
    pub fn new(config: &AuthConfig) -> Result<Self, String> {
        if config.mode == AuthMode::Off {
            return Ok(Self::off());
        }
        let secret = config.secret.as_deref().filter(|s| !s.is_empty()).ok_or(
            "auth is on but no JWT secret is set: give --jwt-secret or NATTER_JWT_SECRET \
             (or --auth off for local development)",
        )?;
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the JWT secret is {} bytes; HS256 needs at least {MIN_SECRET_BYTES} \
                 (e.g. `openssl rand -base64 48`)",
                secret.len()
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        match &config.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &config.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            mode: AuthMode::On,
            verify: Some(std::sync::Arc::new((
                DecodingKey::from_secret(secret.as_bytes()),
                validation,
            ))),
            required_scope: config.required_scope.clone().filter(|s| !s.is_empty()),
            leeway: config.leeway,
        })
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    pub fn is_on(&self) -> bool {
        self.mode == AuthMode::On
    }

    /// Checks a token (the `Bearer ` prefix, if any, already removed). Every refusal is
    /// `unauthorized` with the reason, except a valid token without the required scope, which
    /// is `forbidden`.
    pub fn verify(&self, token: &str) -> Result<Principal, WireError> {
        let Some(verify) = &self.verify else {
            return Err(unauthorized("auth is off; tokens are not checked"));
        };
        let (key, validation) = &**verify;
        let data = jsonwebtoken::decode::<VerifiedClaims>(token.trim(), key, validation)
            .map_err(|e| unauthorized(reason(e.kind())))?;
        let c = data.claims;
        for (field, value) in [("org_id", &c.org_id), ("user_id", &c.user_id)] {
            if value.trim().is_empty() {
                return Err(unauthorized(format!(
                    "the token's `{field}` claim is empty"
                )));
            }
            check_id_field("token", field, value)
                .map_err(|e| WireError::new(ErrorCode::Unauthorized, e.message))?;
        }
        if let Some(scope) = &self.required_scope
            && !c.scopes.iter().any(|s| s == scope)
        {
            return Err(WireError::new(
                ErrorCode::Forbidden,
                format!("the token lacks the scope `{scope}`"),
            ));
        }
        let admin = c.scopes.iter().any(|s| s == ADMIN_SCOPE);
        Ok(Principal {
            identity: Identity::new(c.org_id, c.user_id).with_admin(admin),
            scopes: c.scopes,
            expires_at: c.exp.saturating_add(self.leeway.as_secs()),
            client_type: c.client_type,
        })
    }
}

fn unauthorized(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::Unauthorized, message)
}

fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (`nbf`)".into(),
        ErrorKind::InvalidSignature => "the token's signature does not match".into(),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            "the token's `alg` must be HS256".into()
        }
        ErrorKind::InvalidIssuer => "the token's issuer (`iss`) is not accepted".into(),
        ErrorKind::InvalidAudience => "the token's audience (`aud`) is not accepted".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        ErrorKind::Json(e) if e.is_data() => {
            format!("the token's claims are not what Natter expects: {e}")
        }
        // `alg: none` lands here: jsonwebtoken has no such algorithm, so the header does not
        // parse.
        _ => "the token is not a well-formed HS256 JWT (`alg: none` and other algorithms are refused)"
            .into(),
    }
}

/// The scope that lets a token act as a `humanAgent` client (CONTRACT §7.1); `chat:admin`
/// does too.
pub const AGENT_SCOPE: &str = "chat:agent";

/// The client type a connection or request acts as (CONTRACT §7.1), from the client's
/// `clientType` hint and, with auth on, the token: its `client_type` claim, else
/// `humanAgent` for a token with the agent scope, else `customer`. A hint that differs from
/// the claim, or `humanAgent` without the agent or admin scope, is `forbidden`; an unknown
/// value is `invalid_field`.
pub fn client_type(
    principal: Option<&Principal>,
    hint: Option<&str>,
) -> Result<ClientType, WireError> {
    let parse = |what: &str, v: &str| {
        ClientType::parse(v).ok_or_else(|| {
            WireError::new(
                ErrorCode::InvalidField,
                format!(
                    "{what} `{v}` is not a client type (one of {})",
                    ClientType::NAMES
                ),
            )
        })
    };
    let hint = hint
        .filter(|h| !h.is_empty())
        .map(|h| parse("clientType", h))
        .transpose()?;
    let Some(p) = principal else {
        return Ok(hint.unwrap_or_default());
    };
    let claim = p
        .client_type
        .as_deref()
        .map(|c| parse("the token's client_type", c))
        .transpose()?;
    let may_agent = p.has_scope(AGENT_SCOPE) || p.has_scope(ADMIN_SCOPE);
    let wanted = match (hint, claim) {
        (Some(h), Some(c)) if h != c => {
            return Err(WireError::new(
                ErrorCode::Forbidden,
                format!(
                    "this token is for a {} client; it cannot connect as {}",
                    c.as_str(),
                    h.as_str()
                ),
            ));
        }
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) if p.has_scope(AGENT_SCOPE) => ClientType::HumanAgent,
        (None, None) => ClientType::Customer,
    };
    if wanted == ClientType::HumanAgent && !may_agent {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            format!(
                "a humanAgent client needs a token with the scope `{AGENT_SCOPE}` (or `{ADMIN_SCOPE}`)"
            ),
        ));
    }
    Ok(wanted)
}

/// Signs `claims` with HS256: for `natter token`, tests, and apps that mint their own.
pub fn mint(secret: &str, claims: &Claims) -> Result<String, String> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| e.to_string())
}

/// Claims for `user_id` in `org_id`, valid for `ttl` from now.
pub fn claims_for(org_id: &str, user_id: &str, scopes: &[&str], ttl: Duration) -> Claims {
    let now = now().as_secs();
    Claims {
        org_id: org_id.into(),
        user_id: user_id.into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        iss: None,
        aud: None,
        exp: now.saturating_add(ttl.as_secs()),
        nbf: None,
        iat: Some(now),
        client_type: None,
    }
}

/// The token in an `Authorization` header value, if it is a bearer token.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

    fn auth(f: impl FnOnce(&mut AuthConfig)) -> Authenticator {
        let mut c = AuthConfig {
            mode: AuthMode::On,
            secret: Some(SECRET.into()),
            ..Default::default()
        };
        f(&mut c);
        Authenticator::new(&c).unwrap()
    }

    fn claims() -> Claims {
        claims_for("acme", "ann", &["chat:connect"], Duration::from_secs(60))
    }

    #[test]
    fn a_good_token_names_org_and_user() {
        let p = auth(|_| {})
            .verify(&mint(SECRET, &claims()).unwrap())
            .unwrap();
        assert_eq!(&*p.identity.org, "acme");
        assert_eq!(&*p.identity.user_id, "ann");
        assert!(!p.identity.admin);
        assert!(p.remaining() > Duration::from_secs(60));
    }

    #[test]
    fn refusals_say_why() {
        let a = auth(|c| {
            c.issuer = Some("gw".into());
            c.audience = Some("api".into());
            c.leeway = Duration::ZERO;
        });
        let mut ok = claims();
        ok.iss = Some("gw".into());
        ok.aud = Some("api".into());
        assert!(a.verify(&mint(SECRET, &ok).unwrap()).is_ok());

        let cases: Vec<(Claims, &str, &str)> = vec![
            (
                Claims {
                    exp: 1,
                    ..ok.clone()
                },
                SECRET,
                "expired",
            ),
            (
                Claims {
                    nbf: Some(u64::MAX / 2),
                    ..ok.clone()
                },
                SECRET,
                "not valid yet",
            ),
            (
                Claims {
                    iss: Some("evil".into()),
                    ..ok.clone()
                },
                SECRET,
                "issuer",
            ),
            (
                Claims {
                    aud: Some("other".into()),
                    ..ok.clone()
                },
                SECRET,
                "audience",
            ),
            (
                Claims {
                    iss: None,
                    ..ok.clone()
                },
                SECRET,
                "`iss`",
            ),
            (
                ok.clone(),
                "another-secret-that-is-also-long-enough!!",
                "signature",
            ),
        ];
        for (c, secret, why) in cases {
            let e = a.verify(&mint(secret, &c).unwrap()).unwrap_err();
            assert_eq!(e.code, ErrorCode::Unauthorized, "{why}");
            assert!(e.message.contains(why), "{why}: {}", e.message);
        }
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let a = auth(|_| {});
        let payload = serde_json::to_vec(&claims()).unwrap();
        let none = format!(
            "{}.{}.",
            base64url(br#"{"alg":"none","typ":"JWT"}"#),
            base64url(&payload)
        );
        assert_eq!(a.verify(&none).unwrap_err().code, ErrorCode::Unauthorized);
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        let e = a.verify(&hs512).unwrap_err();
        assert!(e.message.contains("HS256"), "{}", e.message);
        assert_eq!(
            a.verify("not a jwt").unwrap_err().code,
            ErrorCode::Unauthorized
        );
    }

    #[test]
    fn client_types_follow_hint_claim_and_scopes() {
        let a = auth(|_| {});
        let principal = |scopes: &[&str], claim: Option<&str>| {
            let mut c = claims();
            c.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
            c.client_type = claim.map(str::to_owned);
            a.verify(&mint(SECRET, &c).unwrap()).unwrap()
        };
        let code = |r: Result<ClientType, WireError>| r.unwrap_err().code;
        // Auth off: the hint, default customer; an unknown value is invalid.
        assert_eq!(client_type(None, None).unwrap(), ClientType::Customer);
        assert_eq!(
            client_type(None, Some("observer")).unwrap(),
            ClientType::Observer
        );
        assert_eq!(
            code(client_type(None, Some("robot"))),
            ErrorCode::InvalidField
        );
        // Auth on: humanAgent needs chat:agent or chat:admin.
        let customer = principal(&[], None);
        assert_eq!(
            code(client_type(Some(&customer), Some("humanAgent"))),
            ErrorCode::Forbidden
        );
        assert_eq!(
            client_type(Some(&customer), Some("observer")).unwrap(),
            ClientType::Observer
        );
        let agent = principal(&[AGENT_SCOPE], None);
        assert_eq!(
            client_type(Some(&agent), None).unwrap(),
            ClientType::HumanAgent
        );
        assert_eq!(
            client_type(Some(&agent), Some("customer")).unwrap(),
            ClientType::Customer
        );
        let admin = principal(&[ADMIN_SCOPE], None);
        assert_eq!(
            client_type(Some(&admin), None).unwrap(),
            ClientType::Customer
        );
        assert_eq!(
            client_type(Some(&admin), Some("humanAgent")).unwrap(),
            ClientType::HumanAgent
        );
        // The claim decides; a contradicting hint is refused; the claim still needs the scope.
        let claimed = principal(&[AGENT_SCOPE], Some("humanAgent"));
        assert_eq!(
            client_type(Some(&claimed), None).unwrap(),
            ClientType::HumanAgent
        );
        assert_eq!(
            code(client_type(Some(&claimed), Some("customer"))),
            ErrorCode::Forbidden
        );
        assert_eq!(
            code(client_type(Some(&principal(&[], Some("humanAgent"))), None)),
            ErrorCode::Forbidden
        );
        assert_eq!(
            code(client_type(Some(&principal(&[], Some("boss"))), None)),
            ErrorCode::InvalidField
        );
    }

    #[test]
    fn scopes_and_admin() {
        let a = auth(|c| c.required_scope = Some("chat:connect".into()));
        let mut c = claims();
        c.scopes = vec![];
        assert_eq!(
            a.verify(&mint(SECRET, &c).unwrap()).unwrap_err().code,
            ErrorCode::Forbidden
        );
        c.scopes = vec!["chat:connect".into(), "chat:admin".into()];
        assert!(a.verify(&mint(SECRET, &c).unwrap()).unwrap().identity.admin);
        // A space-separated string works too.
        let spaced = serde_json::json!({"org_id": "o", "user_id": "u", "scopes": "chat:connect chat:admin", "exp": u64::MAX / 4});
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &spaced,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert!(a.verify(&t).unwrap().identity.admin);
    }

    #[test]
    fn bad_claims_and_config() {
        let a = auth(|_| {});
        let mut c = claims();
        c.user_id = " ".into();
        assert!(
            a.verify(&mint(SECRET, &c).unwrap())
                .unwrap_err()
                .message
                .contains("user_id")
        );
        let no_org = serde_json::json!({"user_id": "u", "exp": u64::MAX / 4});
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &no_org,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(a.verify(&t).unwrap_err().code, ErrorCode::Unauthorized);

        let on = |secret: Option<&str>| {
            Authenticator::new(&AuthConfig {
                mode: AuthMode::On,
                secret: secret.map(Into::into),
                ..Default::default()
            })
        };
        assert!(on(None).unwrap_err().contains("NATTER_JWT_SECRET"));
        assert!(on(Some("short")).unwrap_err().contains("at least 32"));
        assert_eq!(bearer("Bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
    }

    fn base64url(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
}
