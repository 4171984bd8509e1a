//! A task's credential state, living as long as the task: who its
//! credentials are for (the workload), and its OpenBao child token, made on
//! first use, whose policies are the task's granted scopes and whose life
//! ends at the task's deadline. Closing the task revokes it, and every lease
//! left under it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::audit::{AuditKind, AuditScope};
use crate::credentials::error::{CredentialError, MintError};
use crate::credentials::journal::Leftover;
use crate::credentials::openbao::{ChildToken, OpenBao};
use crate::credentials::providers::Providers;
use crate::credentials::revoke::{Revocation, Undo};
use crate::policy::credential::{CredentialSpec, ProviderKind};

/// Who an invocation's credentials are for.
#[derive(Clone, Debug)]
pub(crate) struct Workload {
    /// `spiffe://<trust-domain>/tool/<tool>/task/<task>`.
    pub(crate) id: String,
    pub(crate) principal: String,
    /// Who acts for the principal, if anyone.
    pub(crate) actor: Option<crate::identity::Actor>,
    pub(crate) tool: String,
    pub(crate) task: String,
}

impl Workload {
    /// The `act` claim of the workload's tokens (RFC 8693 §4.1): the
    /// principal it acts for, and under it the agent acting for the
    /// principal, and so on.
    pub(crate) fn delegation(&self) -> crate::identity::Actor {
        crate::identity::Actor { sub: self.principal.clone(), act: self.actor.clone().map(Box::new) }
    }
}

/// A task's credential state: its OpenBao child token, made on first use.
pub(crate) struct TaskCredentials {
    providers: Arc<Providers>,
    pub(crate) workload: Workload,
    deadline: SystemTime,
    pub(crate) audit: AuditScope,
    /// The union of the scopes of the grant's `openbao` credentials: the
    /// child token's policies.
    openbao_policies: Vec<String>,
    /// The child token, and whether the task has closed. A plain mutex,
    /// never held across an await, so closing never misses a token.
    child: std::sync::Mutex<ChildState>,
    /// Serialises creation, so a task makes one child token.
    creating: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct ChildState {
    token: Option<Arc<ChildToken>>,
    closed: bool,
}

impl std::fmt::Debug for TaskCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskCredentials").field("workload", &self.workload.id).finish_non_exhaustive()
    }
}

impl TaskCredentials {
    pub(crate) fn new(
        providers: Arc<Providers>,
        workload: Workload,
        deadline: SystemTime,
        audit: AuditScope,
        specs: &[CredentialSpec],
    ) -> TaskCredentials {
        let mut openbao_policies: Vec<String> = Vec::new();
        for spec in specs.iter().filter(|s| s.provider == ProviderKind::Openbao) {
            for scope in &spec.scopes {
                if !openbao_policies.contains(scope) {
                    openbao_policies.push(scope.clone());
                }
            }
        }
        TaskCredentials {
            providers,
            workload,
            deadline,
            audit,
            openbao_policies,
            child: std::sync::Mutex::new(ChildState::default()),
            creating: tokio::sync::Mutex::new(()),
        }
    }

    fn child_state(&self) -> std::sync::MutexGuard<'_, ChildState> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) async fn child_token(&self, openbao: &OpenBao) -> Result<Arc<ChildToken>, MintError> {
        let _creating = self.creating.lock().await;
        {
            let state = self.child_state();
            if state.closed {
                return Err(MintError::Refused(CredentialError::Unavailable("the task has closed".into())));
            }
            if let Some(token) = &state.token {
                return Ok(token.clone());
            }
        }
        // An empty policy list would let OpenBao give the child its
        // parent's policies: a child token carries granted policies or none.
        if self.openbao_policies.is_empty() {
            return Err(MintError::Refused(CredentialError::Denied(
                "no OpenBao policy is granted to this task (the openbao credentials' scopes are empty), \
                 so there is nothing a task token could carry"
                    .into(),
            )));
        }
        let ttl = self.deadline.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
        if ttl < Duration::from_secs(1) {
            return Err(MintError::Refused(CredentialError::Unavailable("the task's deadline has passed".into())));
        }
        let metadata = serde_json::json!({
            "toolcell_task": self.workload.task,
            "toolcell_tool": self.workload.tool,
            "toolcell_principal": self.workload.principal,
        });
        let provider = |cause| MintError::Provider { provider: ProviderKind::Openbao, cause };
        let token = openbao.create_child_token(&self.openbao_policies, ttl, metadata).await.map_err(provider)?;
        let leftover = Leftover::OpenbaoToken { accessor: token.accessor.clone() };
        if let Err(error) = self.providers.revoker.journal(&leftover, &self.workload.task) {
            // Not journaled means a crash could leak it: revoke it and refuse.
            let _ = openbao.revoke_token(&token.accessor).await;
            return Err(provider(error.into()));
        }
        self.audit.record_or_log(AuditKind::CredentialMinted {
            invocation: None,
            credential: "task token".into(),
            provider: ProviderKind::Openbao.name(),
            scopes: self.openbao_policies.clone(),
            audience: openbao.config.address.clone(),
            id: token.accessor.clone(),
            expires_at: token.expires_at,
            exposure: "inject",
        });
        let token = Arc::new(token);
        let mut state = self.child_state();
        if state.closed {
            // The task closed while the token was being made: it goes at once.
            drop(state);
            let mut revocation = self.revocation(&token);
            revocation.reason = Some("made after its task closed".into());
            self.providers.revoker.revoke_later(revocation);
            return Err(MintError::Refused(CredentialError::Unavailable("the task has closed".into())));
        }
        state.token = Some(token.clone());
        Ok(token)
    }

    fn revocation(&self, token: &ChildToken) -> Revocation {
        Revocation {
            undo: Undo::OpenbaoToken { accessor: token.accessor.clone() },
            credential: "task token".into(),
            provider: ProviderKind::Openbao,
            id: token.accessor.clone(),
            invocation: None,
            audit: self.audit.clone(),
            reason: Some("the task closed".into()),
        }
    }

    /// Marks the task closed and takes its child token, if it has one.
    fn take_for_close(&self) -> Option<Arc<ChildToken>> {
        let mut state = self.child_state();
        state.closed = true;
        state.token.take()
    }

    /// Task close: revokes the child token, and every lease left under it.
    pub(crate) async fn close(&self) {
        self.close_because(None).await;
    }

    /// Task close, saying why when it is not the caller's close (a kill).
    pub(crate) async fn close_because(&self, reason: Option<String>) {
        if let Some(token) = self.take_for_close() {
            let mut revocation = self.revocation(&token);
            if reason.is_some() {
                revocation.reason = reason;
            }
            self.providers.revoker.revoke(revocation).await;
        }
    }

    /// Task close without an executor to wait on (a dropped task).
    pub(crate) fn close_later(&self) {
        if let Some(token) = self.take_for_close() {
            self.providers.revoker.revoke_later(self.revocation(&token));
        }
    }
}
