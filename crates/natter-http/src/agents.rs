//! `GET /api/v1/agents` → `{agents: [{id, name, description}]}`: the named assistants a chat
//! may be bound to (CONTRACT §7.5). With auth on, any authenticated user of any org may list
//! them (agents are the server's, not an org's); with none configured, the server's default
//! is the one agent.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Value, json};

use crate::Face;
use crate::error::ApiResult;
use crate::identity::{Caller, identify};

/// Where the list is served.
pub const AGENTS_PATH: &str = "/api/v1/agents";

#[utoipa::path(
    get,
    path = "/api/v1/agents",
    tag = "agents",
    operation_id = "agents_list",
    summary = "The agents a chat can be bound to",
    security((), ("bearerAuth" = [])),
    params(crate::openapi::IdentityQuery),
    responses((status = 200, description = "The agents", body = crate::openapi::AgentList), crate::openapi::Errors),
)]
pub async fn list(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    // Only to refuse callers without a valid token.
    identify(&caller, None, &q)?;
    let agents: Vec<Value> = face
        .core
        .agents()
        .into_iter()
        .map(|a| json!({"id": a.id, "name": a.name, "description": a.description}))
        .collect();
    Ok(Json(json!({ "agents": agents })))
}
