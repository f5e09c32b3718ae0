//! Who and where: chats, identities and connections.

use std::fmt;
use std::sync::Arc;

/// A chat is named by its org (tenant) and its id inside that org.
/// Two orgs may use the same `chat_id` without ever seeing each other's chat.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChatKey {
    pub org: Arc<str>,
    pub chat_id: Arc<str>,
}

impl ChatKey {
    pub fn new(org: impl Into<Arc<str>>, chat_id: impl Into<Arc<str>>) -> Self {
        Self {
            org: org.into(),
            chat_id: chat_id.into(),
        }
    }
}

impl fmt::Display for ChatKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org, self.chat_id)
    }
}

/// Who is acting. Faces resolve it once per connection or request (dev mode from the
/// handshake now, JWT claims later) and the core trusts it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub org: Arc<str>,
    pub user_id: Arc<str>,
}

/// One client connection (a socket, an SSE stream, …), unique within the cluster.
/// Used to skip echoing a member's own events back to it.
pub type ConnectionId = Arc<str>;

/// What the store knows about a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatInfo {
    /// Changes only if the chat's log is lost; a client holding another epoch cannot recover.
    pub epoch: String,
    /// The highest `seq` in the log (0 for none).
    pub head_seq: u64,
    pub created_at: i64,
}
