//! Who a connection is. The one place identity is decided for the Socket.IO face.
//!
//! Auth on (CONTRACT §5): the handshake carries a token (`auth.token`, query `token`, or an
//! `Authorization: Bearer` header) and the org and user are its claims, fixed for the life of
//! the connection. A handshake or payload naming another user or org is refused with
//! `forbidden`. `auth:refresh {token}` swaps in a fresh token for the same user before the
//! old one expires; a socket whose token expires is told (`error token_expired`) and dropped.
//!
//! Auth off (development): the org comes from the handshake (`auth.orgId` or query `orgId`,
//! default `default`) and the user from `auth.userId` or query `userId`. A connection that
//! names no user takes the `userId` of its first payload that carries one; from then on, as
//! with a named connection, a payload naming another user is refused with `forbidden`, so
//! clients behave the same once tokens are required.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use natter_auth::Principal;
use natter_core::Identity;
use natter_core::chat::ClientType;
use natter_protocol::{ErrorCode, WireError};
use serde_json::Value;

pub use natter_core::chat::DEFAULT_ORG;

/// The handshake fields a client sent: the query string and the `auth` object.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    pub query: HashMap<String, String>,
    pub auth: serde_json::Map<String, Value>,
}

impl Handshake {
    pub fn new(query: Option<&str>, auth: Option<Value>) -> Self {
        let query = query
            .map(|q| {
                q.split('&')
                    .filter_map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        Some((decode(k)?, decode(v)?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let auth = match auth {
            Some(Value::Object(map)) => map,
            _ => Default::default(),
        };
        Self { query, auth }
    }

    /// A field from `auth` (preferred) or the query; numbers are turned into strings.
    pub fn field(&self, name: &str) -> Option<String> {
        let from_auth = match self.auth.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        from_auth.or_else(|| self.query.get(name).filter(|s| !s.is_empty()).cloned())
    }
}

fn decode(s: &str) -> Option<String> {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A connection's identity, fixed once known.
pub struct ConnIdentity {
    org: Arc<str>,
    user: Mutex<Option<Arc<str>>>,
    anonymous: Arc<str>,
    /// The token's `chat:admin` scope (auth on).
    admin: AtomicBool,
    /// When the connection's token stops being accepted, Unix seconds; 0 with auth off.
    expires_at: AtomicU64,
    /// The handshake's `clientType` (CONTRACT §7.1), fixed for the connection.
    client_type: ClientType,
}

impl ConnIdentity {
    /// Auth off: identity from the handshake's hints.
    pub fn from_handshake(h: &Handshake, socket_id: &str) -> Self {
        let org = h.field("orgId").unwrap_or_else(|| DEFAULT_ORG.to_owned());
        Self {
            org: org.into(),
            user: Mutex::new(h.field("userId").map(Into::into)),
            anonymous: format!("anon-{socket_id}").into(),
            admin: AtomicBool::new(false),
            expires_at: AtomicU64::new(0),
            client_type: ClientType::Customer,
        }
    }

    /// The connection's client type, as [`natter_auth::client_type`] decided it.
    pub fn with_client_type(mut self, client_type: ClientType) -> Self {
        self.client_type = client_type;
        self
    }

    pub fn client_type(&self) -> ClientType {
        self.client_type
    }

    /// Auth on: identity from a verified token. Handshake hints must agree with it.
    pub fn from_token(p: &Principal, h: &Handshake) -> Result<Self, WireError> {
        for (field, known, what) in [
            ("userId", &p.identity.user_id, "user"),
            ("orgId", &p.identity.org, "org"),
        ] {
            if let Some(hint) = h.field(field)
                && hint != **known
            {
                return Err(WireError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "this token is for {what} `{known}`; the handshake names {what} `{hint}`"
                    ),
                ));
            }
        }
        Ok(Self {
            org: p.identity.org.clone(),
            user: Mutex::new(Some(p.identity.user_id.clone())),
            anonymous: p.identity.user_id.clone(),
            admin: AtomicBool::new(p.identity.admin),
            expires_at: AtomicU64::new(p.expires_at),
            client_type: ClientType::Customer,
        })
    }

    pub fn org(&self) -> &Arc<str> {
        &self.org
    }

    /// `user_id` of this connection's org, with this connection's rights.
    pub fn as_user(&self, user_id: Arc<str>) -> Identity {
        Identity::new(self.org.clone(), user_id)
            .with_admin(self.admin.load(Ordering::Relaxed))
            .with_client_type(self.client_type)
    }

    /// When the token stops being accepted (Unix seconds); `None` with auth off.
    pub fn expires_at(&self) -> Option<u64> {
        match self.expires_at.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// Takes a refreshed token: it must be for the same org and user.
    pub fn refresh(&self, p: &Principal) -> Result<(), WireError> {
        let user = self.user.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if p.identity.org != self.org || Some(&p.identity.user_id) != user.as_ref() {
            return Err(WireError::new(
                ErrorCode::Forbidden,
                "a refreshed token must be for the same org and user as the connection",
            ));
        }
        self.admin.store(p.identity.admin, Ordering::Relaxed);
        self.expires_at.store(p.expires_at, Ordering::Relaxed);
        Ok(())
    }

    /// Refuses a handshake whose ids are over the length limit (a `connect_error`).
    pub fn check(h: &Handshake) -> Result<(), WireError> {
        for field in ["userId", "orgId"] {
            if let Some(v) = h.field(field) {
                natter_protocol::fields::check_id_field("handshake", field, &v)?;
            }
        }
        Ok(())
    }

    /// The identity for a payload whose `userId` hint is `hint`. Changes nothing: an unnamed
    /// connection takes the hinted name only once the event is applied ([`Self::adopt`]), so a
    /// refused event leaves no trace.
    pub fn resolve(&self, hint: Option<&str>) -> Result<Identity, WireError> {
        if let Some(hint) = hint {
            natter_protocol::fields::check_id_field("payload", "userId", hint)?;
        }
        let user = self.user.lock().unwrap_or_else(|p| p.into_inner());
        let user_id = match (user.as_ref(), hint) {
            (Some(known), Some(hint)) if &**known != hint => {
                return Err(WireError::new(
                    ErrorCode::Forbidden,
                    format!("this connection is user `{known}`; it cannot act as `{hint}`"),
                ));
            }
            (Some(known), _) => known.clone(),
            (None, Some(hint)) => hint.into(),
            (None, None) => self.anonymous.clone(),
        };
        Ok(self.as_user(user_id))
    }
}

impl ConnIdentity {
    /// Fixes an unnamed connection's user to the one an applied event named.
    pub fn adopt(&self, who: &Identity) {
        let mut user = self.user.lock().unwrap_or_else(|p| p.into_inner());
        if user.is_none() && who.user_id != self.anonymous {
            *user = Some(who.user_id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn handshake_fields() {
        let h = Handshake::new(
            Some("userId=ann%20b&chatId=7&EIO=4"),
            Some(json!({"orgId": "acme", "chatId": 9})),
        );
        assert_eq!(h.field("userId").as_deref(), Some("ann b"));
        assert_eq!(h.field("chatId").as_deref(), Some("9"));
        assert_eq!(h.field("orgId").as_deref(), Some("acme"));
        assert_eq!(h.field("nope"), None);
    }

    #[test]
    fn named_connections_cannot_spoof() {
        let id = ConnIdentity::from_handshake(&Handshake::new(Some("userId=ann"), None), "s1");
        assert_eq!(&*id.resolve(None).unwrap().user_id, "ann");
        assert_eq!(
            id.resolve(Some("bob")).unwrap_err().code,
            ErrorCode::Forbidden
        );

        let anon = ConnIdentity::from_handshake(&Handshake::default(), "s2");
        let carol = anon.resolve(Some("carol")).unwrap();
        assert_eq!(&*carol.user_id, "carol");
        // Not applied yet: another name is still possible.
        assert!(anon.resolve(Some("dave")).is_ok());
        anon.adopt(&carol);
        assert!(anon.resolve(Some("dave")).is_err());
        assert_eq!(&*anon.resolve(None).unwrap().user_id, "carol");
        assert_eq!(&**anon.org(), "default");
    }
}
