//! Key and channel names.
//!
//! Org, chat, user and node ids are user-provided strings (up to a few hundred bytes), so
//! each is percent-encoded: every byte outside `A-Z a-z 0-9 - _ . ~` becomes `%XX`. The
//! encoding is injective and its output never contains `:`, `{`, `}`, `*`, `?`, `[` or
//! spaces, so `org:chat` pairs cannot collide (`("a:b","c")` and `("a","b:c")` differ), an id
//! cannot reach into another key kind, and no id can form a pattern or a cluster hash tag.
//! Per-chat keys put the chat in a hash tag (`{org:chat}`) so a chat's keys share a slot.

use natter_core::chat::ChatKey;

pub(crate) struct Keys {
    prefix: String,
}

fn encode_into(out: &mut String, id: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in id.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// The percent-encoding of one id (see the module docs).
#[cfg(test)]
fn encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    encode_into(&mut out, id);
    out
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    fn with(&self, kind: &str, f: impl FnOnce(&mut String)) -> String {
        let mut s = String::with_capacity(self.prefix.len() + kind.len() + 64);
        s.push_str(&self.prefix);
        s.push(':');
        s.push_str(kind);
        s.push(':');
        f(&mut s);
        s
    }

    fn chat_tag(out: &mut String, chat: &ChatKey, braces: bool) {
        if braces {
            out.push('{');
        }
        encode_into(out, &chat.org);
        out.push(':');
        encode_into(out, &chat.chat_id);
        if braces {
            out.push('}');
        }
    }

    /// `natter:chat:ORG:CHAT`: the chat's pub/sub channel.
    pub(crate) fn chat_channel(&self, chat: &ChatKey) -> String {
        self.with("chat", |s| Self::chat_tag(s, chat, false))
    }

    /// `natter:turn:{ORG:CHAT}`: hash naming the running turn (`mid`, `turn`) and the
    /// chat's buffer offset counter (`off`).
    pub(crate) fn turn(&self, chat: &ChatKey) -> String {
        self.with("turn", |s| Self::chat_tag(s, chat, true))
    }

    /// `natter:tokens:{ORG:CHAT}`: the running turn's token stream.
    pub(crate) fn tokens(&self, chat: &ChatKey) -> String {
        self.with("tokens", |s| Self::chat_tag(s, chat, true))
    }

    /// `natter:presence:{ORG:CHAT}`: sorted set connection → expiry (ms).
    pub(crate) fn presence(&self, chat: &ChatKey) -> String {
        self.with("presence", |s| Self::chat_tag(s, chat, true))
    }

    /// `natter:presence-users:{ORG:CHAT}`: hash connection → user id.
    pub(crate) fn presence_users(&self, chat: &ChatKey) -> String {
        self.with("presence-users", |s| Self::chat_tag(s, chat, true))
    }

    /// `natter:lease:{ORG:CHAT}`: the node holding the chat's turn lease.
    pub(crate) fn lease(&self, chat: &ChatKey) -> String {
        self.with("lease", |s| Self::chat_tag(s, chat, true))
    }

    /// `natter:user:ORG:USER`: the user's pub/sub channel.
    pub(crate) fn user_channel(&self, org: &str, user: &str) -> String {
        self.with("user", |s| {
            encode_into(s, org);
            s.push(':');
            encode_into(s, user);
        })
    }

    /// `natter:node:NODE`: a node's control channel.
    pub(crate) fn node_channel(&self, node: &str) -> String {
        self.with("node", |s| encode_into(s, node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_collide_or_inject() {
        let k = Keys::new("natter");
        let a = k.chat_channel(&ChatKey::new("a:b", "c"));
        let b = k.chat_channel(&ChatKey::new("a", "b:c"));
        assert_ne!(a, b);
        assert_eq!(a, "natter:chat:a%3Ab:c");
        let t = k.turn(&ChatKey::new("o{x}", "c*?[ ]%"));
        assert_eq!(t, "natter:turn:{o%7Bx%7D:c%2A%3F%5B%20%5D%25}");
        assert_eq!(encode("é"), "%C3%A9");
        // A user channel can never equal a chat channel.
        assert_ne!(
            k.user_channel("o", "u"),
            k.chat_channel(&ChatKey::new("o", "u"))
        );
    }
}
