//! Approval by MCP elicitation: the client that made a call is asked, in a
//! form, to approve or deny the action the call is waiting on.
//!
//! The MCP specification has the client put elicitation requests before
//! the person using it; the model that drives the agent never sees them
//! (they are requests from the server to the client, not tool results),
//! and nothing a tool or the agent sends can answer one: only the client's
//! reply to this exact request does. toolcell cannot authenticate that
//! person apart from the session's principal, so an elicitation answer
//! counts as the principal's own: it is used only where the operator
//! allows self-approval (`[approvals] allow_self_approval = true`) and has
//! not turned the channel off (`elicitation = false`). A client that did not
//! declare elicitation is not asked; the admin interface still is.

use std::future::Future;
use std::pin::Pin;

use rmcp::model::{ElicitRequestParams, ElicitationAction, ElicitationSchema};
use rmcp::{Peer, RoleServer};
use toolcell_runtime::{ApprovalChannel, ApprovalRequest, ChannelAnswer};

/// The client of one call, asked by elicitation.
#[derive(Debug)]
pub struct Elicitation {
    peer: Peer<RoleServer>,
    client: String,
}

impl Elicitation {
    /// The call's client, if it declared form elicitation.
    pub fn for_client(peer: &Peer<RoleServer>) -> Option<Elicitation> {
        let info = peer.peer_info()?;
        info.capabilities.elicitation.as_ref()?;
        Some(Elicitation { peer: peer.clone(), client: info.client_info.name.clone() })
    }
}

fn form() -> ElicitationSchema {
    serde_json::from_value(serde_json::json!({
        "type": "object",
        "properties": {
            "approve": { "type": "boolean", "title": "Approve", "description": "Let this one action go ahead" },
            "reason": { "type": "string", "title": "Reason", "description": "Why (recorded in the audit trail)" }
        },
        "required": ["approve"]
    }))
    .expect("the approval form is a valid elicitation schema")
}

impl ApprovalChannel for Elicitation {
    fn ask(&self, request: ApprovalRequest) -> Pin<Box<dyn Future<Output = Option<ChannelAnswer>> + Send>> {
        let peer = self.peer.clone();
        let client = self.client.clone();
        Box::pin(async move {
            let message = format!(
                "toolcell: approve this action?\n{} through tool `{}`: {}\nWhy approval is needed: {}\n\
                 Digest: {}\nExpires: {}",
                request.principal, request.tool, request.what, request.why, request.digest, request.expires_at
            );
            let params = ElicitRequestParams::FormElicitationParams { meta: None, message, requested_schema: form() };
            let reply = match peer.create_elicitation(params).await {
                Ok(reply) => reply,
                Err(error) => {
                    tracing::info!(target: "toolcell::approval", "elicitation to {client}: {error}");
                    return None;
                }
            };
            let (approve, reason) = match reply.action {
                ElicitationAction::Accept => {
                    let content = reply.content.unwrap_or_default();
                    let approve = content["approve"].as_bool()?;
                    (approve, content["reason"].as_str().map(str::to_owned))
                }
                ElicitationAction::Decline => (false, Some("declined at the client".to_owned())),
                // Dismissed (or an action this version does not know): no
                // answer from this channel; the request waits on.
                _ => return None,
            };
            Some(ChannelAnswer {
                approve,
                // The person at the client answers as the principal (see the module docs).
                approver: request.principal.clone(),
                channel: format!("elicitation ({client})"),
                reason,
            })
        })
    }
}
