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

/// The org of a dev-mode request that names none (CONTRACT §6.11), on every face.
pub const DEFAULT_ORG: &str = "default";

/// Who is acting. Faces resolve it once per connection or request (from a verified token's
/// claims, or from hints with auth off) and the core trusts it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub org: Arc<str>,
    pub user_id: Arc<str>,
    /// Holds the `chat:admin` scope: every chat of the org, member lists notwithstanding.
    pub admin: bool,
    /// What kind of client acts (CONTRACT §7.1): a customer, a human agent, or an observer.
    pub client_type: ClientType,
}

/// Seed 002's `clientType` (CONTRACT §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ClientType {
    #[default]
    Customer,
    /// A person from the support desk: takes chats over from the AI (handoff, §7.2).
    HumanAgent,
    /// Receives everything, writes nothing, and is not listed in presence.
    Observer,
}

impl ClientType {
    pub const NAMES: &'static str = "customer, humanAgent, observer";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "customer" => Some(Self::Customer),
            "humanAgent" => Some(Self::HumanAgent),
            "observer" => Some(Self::Observer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::HumanAgent => "humanAgent",
            Self::Observer => "observer",
        }
    }
}

impl Identity {
    /// An ordinary member.
    pub fn new(org: impl Into<Arc<str>>, user_id: impl Into<Arc<str>>) -> Self {
        Self {
            org: org.into(),
            user_id: user_id.into(),
            admin: false,
            client_type: ClientType::Customer,
        }
    }

    pub fn with_admin(mut self, admin: bool) -> Self {
        self.admin = admin;
        self
    }

    pub fn with_client_type(mut self, client_type: ClientType) -> Self {
        self.client_type = client_type;
        self
    }

    /// Whether this client may change a chat (send, type, react, answer tools): observers
    /// may not (CONTRACT §7.1).
    pub fn may_write(&self) -> bool {
        self.client_type != ClientType::Observer
    }

    /// [`Self::may_write`] as the error every face answers with: `forbidden`, naming `what`.
    pub fn check_may_write(&self, what: &str) -> Result<(), crate::CoreError> {
        if self.may_write() {
            Ok(())
        } else {
            Err(crate::CoreError::rejected(
                natter_protocol::ErrorCode::Forbidden,
                format!("an observer may not {what}: observers only receive"),
            ))
        }
    }

    pub fn is_human_agent(&self) -> bool {
        self.client_type == ClientType::HumanAgent
    }
}

/// Where a request comes from, for the limits: its long-lived connection (a socket, a
/// stream), if any, and the peer's address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    pub conn: Option<ConnectionId>,
    pub ip: Option<std::net::IpAddr>,
}

impl Source {
    pub fn new(conn: Option<ConnectionId>, ip: Option<std::net::IpAddr>) -> Self {
        Self { conn, ip }
    }
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

/// What a new chat starts with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewChat {
    pub created_by: Option<String>,
    pub metadata: Option<serde_json::Value>,
    /// Who may use the chat (the creator always may). `None`: every user of the org.
    pub members: Option<Vec<String>>,
}

/// A chat's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChatStatus {
    #[default]
    Active,
    /// Ended by a member (`/end`). Messages are still accepted; the status records the end.
    Closed,
}

impl ChatStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "closed" => Self::Closed,
            _ => Self::Active,
        }
    }
}

/// A chat as lists and history show it: the store keeps these fields up to date as events
/// are appended (title, pin, status, last activity).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatSummary {
    pub key: ChatKey,
    /// Set by a rename, else taken from the first user message; `None` until either.
    pub title: Option<String>,
    pub pinned: bool,
    pub status: ChatStatus,
    pub created_by: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub created_at: i64,
    /// Time of the latest event.
    pub updated_at: i64,
    pub head_seq: u64,
    pub epoch: String,
    /// Who may use the chat besides org admins (the creator is always in it). `None`: every
    /// user of the org.
    pub members: Option<Vec<String>>,
    /// Handoff (CONTRACT §7.2): since when the chat waits for a human agent (Unix ms).
    pub waiting_since: Option<i64>,
    /// Handoff: the human agents engaged in the chat, in the order they joined.
    pub human_agents: Vec<String>,
    /// The latest CSAT answer, if any (CONTRACT §7.4).
    pub csat: Option<crate::event::Csat>,
}

impl ChatSummary {
    /// Handoff: whether the AI answers user messages (no human agent is engaged).
    pub fn ai_engaged(&self) -> bool {
        self.human_agents.is_empty()
    }

    pub fn human_agent_engaged(&self) -> bool {
        !self.human_agents.is_empty()
    }

    pub fn is_waiting_for_agent(&self) -> bool {
        self.waiting_since.is_some()
    }

    /// The handoff state the summary holds.
    pub fn handoff(&self) -> crate::event::HandoffState {
        crate::event::HandoffState {
            waiting_since: self.waiting_since,
            agents: self.human_agents.clone(),
        }
    }

    /// Whether `who` may read, join and post in this chat. The org is already part of the
    /// key, so this is about the chat's own member list.
    pub fn admits(&self, who: &Identity) -> bool {
        who.admin
            || match &self.members {
                None => true,
                Some(list) => {
                    self.created_by.as_deref() == Some(&*who.user_id)
                        || list.iter().any(|m| **m == *who.user_id)
                }
            }
    }
}

/// Which chats a list holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatScope {
    /// Every chat of the org.
    Org,
    /// The chats this user created or posted in.
    Member(Arc<str>),
}

/// One page of a chat list, newest activity first (pinned chats first).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatPage {
    pub chats: Vec<ChatSummary>,
    /// All chats in scope, not only this page.
    pub total: u64,
}

/// Longest title taken from a first message, in characters.
pub const AUTO_TITLE_CHARS: usize = 60;

/// The title a chat takes from its first user message: the first line, whitespace folded,
/// cut at a word boundary to at most [`AUTO_TITLE_CHARS`] characters (with `…` when cut).
pub fn title_from_text(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let folded: Vec<&str> = line.split_whitespace().collect();
    let folded = folded.join(" ");
    if folded.chars().count() <= AUTO_TITLE_CHARS {
        return folded;
    }
    let cut: String = folded.chars().take(AUTO_TITLE_CHARS - 1).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > AUTO_TITLE_CHARS / 2 => &cut[..i],
        _ => cut.as_str(),
    };
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_from_first_messages() {
        assert_eq!(title_from_text("  hello   there \nsecond"), "hello there");
        assert_eq!(title_from_text("\n\n  x"), "x");
        assert_eq!(title_from_text(""), "");
        let long = "word ".repeat(30);
        let t = title_from_text(&long);
        assert!(
            t.ends_with('…') && t.chars().count() <= AUTO_TITLE_CHARS,
            "{t}"
        );
        assert!(!t.contains("wo…"), "cut at a word boundary: {t}");
        // No space to cut at: cut by characters, never inside a UTF-8 sequence.
        let cjk = "漢".repeat(100);
        assert_eq!(title_from_text(&cjk).chars().count(), AUTO_TITLE_CHARS);
    }
}
