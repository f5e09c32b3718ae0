//! Agents: named assistants a chat is bound to at creation (CONTRACT §7.5). Each has its own
//! system prompt, provider, model, tools and temperature; what it leaves out is the core's
//! own default. The binding is `agentId` in the chat's creation metadata (a durable event),
//! so whichever node runs a turn reads it from the store.
//!
//! With no agents registered, the core's own settings are the one agent and bindings are
//! not checked (a client may still record `agentId` / `agentName` in metadata, as before).

use std::sync::Arc;

use natter_protocol::ErrorCode;
use serde_json::Value;

use crate::error::CoreError;
use crate::provider::Provider;

/// The metadata key a chat's binding is stored under.
pub const AGENT_ID_KEY: &str = "agentId";
/// The metadata key seed 002 may bind by instead (the agent's `name`).
pub const AGENT_NAME_KEY: &str = "agentName";
/// The id `GET /api/v1/agents` lists when no agents are configured.
pub const DEFAULT_AGENT_ID: &str = "default";

/// One named assistant. `None` fields take the core's defaults.
#[derive(Clone)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub system_prompt: Option<String>,
    /// `None`: the core's provider.
    pub provider: Option<Arc<dyn Provider>>,
    pub model: Option<String>,
    /// Names of the server's tools this agent may call; `None`: all of them.
    pub tools: Option<Vec<String>>,
    pub temperature: Option<f32>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("id", &self.id)
            .field("name", &self.name)
            .field(
                "provider",
                &self.provider.as_ref().map(|p| p.name().to_owned()),
            )
            .field("model", &self.model)
            .field("tools", &self.tools)
            .field("temperature", &self.temperature)
            .finish()
    }
}

/// What a list of agents shows: `{id, name, description}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
}

/// The agents a core knows, by id. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Agents {
    list: Arc<Vec<Arc<Agent>>>,
}

impl Agents {
    /// Refuses an empty or repeated id (ids are what chats are bound by).
    pub fn new(agents: Vec<Agent>) -> Result<Self, String> {
        let mut list: Vec<Arc<Agent>> = Vec::with_capacity(agents.len());
        for a in agents {
            if a.id.trim().is_empty() {
                return Err("an agent's `id` must not be empty".into());
            }
            if list.iter().any(|b| b.id == a.id) {
                return Err(format!("two agents have the id `{}`", a.id));
            }
            list.push(Arc::new(a));
        }
        Ok(Self {
            list: Arc::new(list),
        })
    }

    /// No agents: the core's own settings answer every chat.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Agent>> {
        self.list.iter().find(|a| a.id == id)
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Agent>> {
        self.list.iter().find(|a| a.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Agent>> {
        self.list.iter()
    }

    /// `{id, name, description}` of each agent; with none configured, the one default.
    pub fn infos(&self) -> Vec<AgentInfo> {
        if self.list.is_empty() {
            return vec![AgentInfo {
                id: DEFAULT_AGENT_ID.into(),
                name: "Assistant".into(),
                description: Some("The server's default assistant".into()),
            }];
        }
        self.list
            .iter()
            .map(|a| AgentInfo {
                id: a.id.clone(),
                name: a.name.clone(),
                description: a.description.clone(),
            })
            .collect()
    }

    fn not_found(what: &str, value: &str) -> CoreError {
        CoreError::rejected(
            ErrorCode::NotFound,
            format!("there is no agent with the {what} `{value}`"),
        )
    }

    /// The agent an explicit `agentId` (Socket.IO join, AI SDK body) names. `Ok(None)` with
    /// no agents configured (nothing is checked then).
    pub fn resolve_id(&self, id: &str) -> Result<Option<Arc<Agent>>, CoreError> {
        if self.is_empty() {
            return Ok(None);
        }
        self.get(id)
            .cloned()
            .map(Some)
            .ok_or_else(|| Self::not_found("id", id))
    }

    /// The agent creation metadata asks for (`agentId`, else `agentName`), and the metadata to
    /// store: with `agentId` set to the agent's id. With no agents configured, or no binding
    /// asked for, the metadata is unchanged.
    pub fn bind(
        &self,
        metadata: Option<Value>,
    ) -> Result<(Option<Arc<Agent>>, Option<Value>), CoreError> {
        if self.is_empty() {
            return Ok((None, metadata));
        }
        let Some(Value::Object(mut map)) = metadata else {
            return Ok((None, metadata));
        };
        let field = |key: &str| -> Result<Option<String>, CoreError> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(CoreError::rejected(
                    ErrorCode::InvalidField,
                    format!("`metadata.{key}` must be a string"),
                )),
            }
        };
        let by_id = field(AGENT_ID_KEY)?;
        let by_name = field(AGENT_NAME_KEY)?;
        let agent = match (&by_id, &by_name) {
            (None, None) => return Ok((None, Some(Value::Object(map)))),
            (Some(id), _) => self
                .get(id)
                .cloned()
                .ok_or_else(|| Self::not_found("id", id))?,
            (None, Some(name)) => self
                .by_name(name)
                .cloned()
                .ok_or_else(|| Self::not_found("name", name))?,
        };
        if let (Some(_), Some(name)) = (&by_id, &by_name)
            && agent.name != *name
        {
            return Err(CoreError::rejected(
                ErrorCode::InvalidField,
                format!(
                    "`metadata.agentId` `{}` and `metadata.agentName` `{name}` name different agents",
                    agent.id
                ),
            ));
        }
        map.insert(AGENT_ID_KEY.into(), Value::String(agent.id.clone()));
        Ok((Some(agent), Some(Value::Object(map))))
    }

    /// The agent a chat is bound to, from its creation metadata. `Ok(None)`: unbound (or no
    /// agents configured): the core's defaults. `Err`: bound to an agent the configuration
    /// no longer has.
    pub fn bound(&self, metadata: Option<&Value>) -> Result<Option<Arc<Agent>>, String> {
        if self.is_empty() {
            return Ok(None);
        }
        match metadata
            .and_then(|m| m.get(AGENT_ID_KEY))
            .and_then(Value::as_str)
        {
            None | Some("") => Ok(None),
            Some(id) => self.get(id).cloned().map(Some).ok_or_else(|| {
                format!("this chat is bound to agent `{id}`, which the server no longer has")
            }),
        }
    }
}

/// The agent id a chat's metadata records, if any.
pub fn bound_id(metadata: Option<&Value>) -> Option<&str> {
    metadata
        .and_then(|m| m.get(AGENT_ID_KEY))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agent(id: &str, name: &str) -> Agent {
        Agent {
            id: id.into(),
            name: name.into(),
            description: None,
            system_prompt: Some(format!("You are {name}.")),
            provider: None,
            model: None,
            tools: None,
            temperature: None,
        }
    }

    #[test]
    fn binding_by_id_or_name() {
        let agents = Agents::new(vec![agent("a1", "Alpha"), agent("b2", "Beta")]).unwrap();
        let (a, m) = agents
            .bind(Some(json!({"agentName": "Beta", "x": 1})))
            .unwrap();
        assert_eq!(a.unwrap().id, "b2");
        assert_eq!(
            m.unwrap(),
            json!({"agentName": "Beta", "agentId": "b2", "x": 1})
        );
        let (a, _) = agents.bind(Some(json!({"agentId": "a1"}))).unwrap();
        assert_eq!(a.unwrap().id, "a1");
        let (a, m) = agents.bind(Some(json!({"other": true}))).unwrap();
        assert!(a.is_none());
        assert_eq!(m.unwrap(), json!({"other": true}));
        fn code<T>(r: Result<T, CoreError>) -> ErrorCode {
            match r {
                Err(CoreError::Rejected(e)) => e.code,
                _ => panic!("expected a rejection"),
            }
        }
        assert_eq!(
            code(agents.bind(Some(json!({"agentId": "zz"})))),
            ErrorCode::NotFound
        );
        assert_eq!(
            code(agents.bind(Some(json!({"agentName": "Gamma"})))),
            ErrorCode::NotFound
        );
        assert_eq!(
            code(agents.bind(Some(json!({"agentId": 5})))),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(agents.bind(Some(json!({"agentId": "a1", "agentName": "Beta"})))),
            ErrorCode::InvalidField
        );
        assert_eq!(code(agents.resolve_id("nope")), ErrorCode::NotFound);
        assert!(agents.bound(Some(&json!({"agentId": "gone"}))).is_err());
        assert_eq!(
            agents
                .bound(Some(&json!({"agentId": "a1"})))
                .unwrap()
                .unwrap()
                .id,
            "a1"
        );
    }

    #[test]
    fn no_agents_checks_nothing() {
        let agents = Agents::default();
        let (a, m) = agents.bind(Some(json!({"agentName": "helper"}))).unwrap();
        assert!(a.is_none());
        assert_eq!(m.unwrap(), json!({"agentName": "helper"}));
        assert!(agents.resolve_id("whatever").unwrap().is_none());
        assert_eq!(agents.infos()[0].id, DEFAULT_AGENT_ID);
        assert!(Agents::new(vec![agent("a", "A"), agent("a", "B")]).is_err());
        assert!(Agents::new(vec![agent(" ", "A")]).is_err());
    }
}
