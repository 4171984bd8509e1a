//! Revocation: what teardown does to each credential, the retries of
//! revocations that failed, and the recovery of what a crashed runtime left.
//!
//! Every revocation is audited. A failed one is retried in the background
//! with backoff, each failure audited as `retrying` and the last as
//! `gave_up`; the lease journal keeps it open meanwhile, so even a runtime
//! that stops before the retries succeed revokes it at its next start.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::audit::{AuditKind, AuditScope};
use crate::credentials::error::ProviderError;
use crate::credentials::exchange::TokenExchange;
use crate::credentials::issuer::Issuer;
use crate::credentials::journal::{JournalError, LeaseJournal, Leftover};
use crate::credentials::openbao::OpenBao;
use crate::outstanding::Outstanding;
use crate::policy::credential::ProviderKind;

/// What undoing one credential takes.
pub(crate) enum Undo {
    /// Deny-list an issuer token until its expiry (and keep it journaled
    /// until then, so a restarted runtime deny-lists it again).
    DenyList { jti: String, exp: u64 },
    /// Revoke an OpenBao lease.
    OpenbaoLease { lease_id: String },
    /// Revoke an OpenBao child token, and every lease under it.
    OpenbaoToken { accessor: String },
    /// Revoke an exchanged OAuth token (RFC 7009).
    Exchanged { token: SecretString },
    /// Drop a host-held secret (static): nothing to revoke upstream.
    Release,
}

/// One credential to revoke, with what its audit events need.
pub(crate) struct Revocation {
    pub(crate) undo: Undo,
    pub(crate) credential: String,
    pub(crate) provider: ProviderKind,
    pub(crate) id: String,
    pub(crate) invocation: Option<String>,
    pub(crate) audit: AuditScope,
    /// Why it is being revoked, when that is not the end of a call.
    pub(crate) reason: Option<String>,
}

impl Revocation {
    fn audit(&self, outcome: &'static str, reason: Option<String>) {
        self.audit.record_or_log(AuditKind::CredentialRevoked {
            invocation: self.invocation.clone(),
            credential: self.credential.clone(),
            provider: self.provider.name(),
            id: self.id.clone(),
            outcome,
            reason: reason.or_else(|| self.reason.clone()),
        });
    }

    fn journal_id(&self) -> Option<String> {
        match &self.undo {
            Undo::OpenbaoLease { lease_id } => Some(Leftover::OpenbaoLease { lease_id: lease_id.clone() }.id()),
            Undo::OpenbaoToken { accessor } => Some(Leftover::OpenbaoToken { accessor: accessor.clone() }.id()),
            // Issuer tokens stay journaled until they expire; the rest are not journaled.
            Undo::DenyList { .. } | Undo::Exchanged { .. } | Undo::Release => None,
        }
    }
}

/// Delays between retries of a failed revocation; after the last, it gives up
/// (the journal still holds it for the next start).
const RETRY_DELAYS: [Duration; 6] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// Revokes credentials for the whole runtime.
#[derive(Debug)]
pub(crate) struct Revoker {
    pub(crate) issuer: Arc<Issuer>,
    pub(crate) openbao: Option<Arc<OpenBao>>,
    pub(crate) exchange: Option<Arc<TokenExchange>>,
    pub(crate) journal: Option<LeaseJournal>,
    /// Everything it runs on the runtime's side: teardowns, mints, retries.
    work: Outstanding,
}

impl Revoker {
    pub(crate) fn new(
        issuer: Arc<Issuer>,
        openbao: Option<Arc<OpenBao>>,
        exchange: Option<Arc<TokenExchange>>,
        journal: Option<LeaseJournal>,
    ) -> Revoker {
        Revoker { issuer, openbao, exchange, journal, work: Outstanding::default() }
    }

    /// Records a credential in the journal before the tool gets it.
    pub(crate) fn journal(&self, what: &Leftover, task: &str) -> Result<(), JournalError> {
        match &self.journal {
            Some(journal) => journal.opened(what, task),
            None => Ok(()),
        }
    }

    /// Marks `id` revoked in the journal; a failure is logged (the next start
    /// finds it already gone upstream and closes it then).
    pub(crate) fn journal_closed(&self, id: &str) {
        if let Some(journal) = &self.journal
            && let Err(error) = journal.closed(id)
        {
            tracing::error!(target: "toolcell::credentials", "{error}");
        }
    }

    /// One attempt; `Ok` carries the audit outcome.
    async fn attempt(&self, revocation: &Revocation) -> Result<&'static str, ProviderError> {
        if let Some(outcome) = self.undo_locally(&revocation.undo) {
            return Ok(outcome);
        }
        let outcome = match &revocation.undo {
            Undo::DenyList { .. } | Undo::Release => unreachable!("undone locally above"),
            Undo::OpenbaoLease { lease_id } => {
                self.openbao.as_ref().ok_or_else(no_openbao)?.revoke_lease(lease_id).await?;
                "revoked"
            }
            Undo::OpenbaoToken { accessor } => {
                self.openbao.as_ref().ok_or_else(no_openbao)?.revoke_token(accessor).await?;
                "revoked"
            }
            Undo::Exchanged { token } => {
                let exchange = self
                    .exchange
                    .as_ref()
                    .ok_or_else(|| ProviderError::NotConfigured("no token exchange server is configured".into()))?;
                if exchange.revoke(token).await? { "revoked" } else { "expires" }
            }
        };
        if let Some(id) = revocation.journal_id() {
            self.journal_closed(&id);
        }
        Ok(outcome)
    }

    /// Revokes now; a failure is audited and retried in the background.
    pub(crate) async fn revoke(self: &Arc<Self>, revocation: Revocation) {
        match self.attempt(&revocation).await {
            Ok(outcome) => revocation.audit(outcome, None),
            Err(error) => {
                revocation.audit("retrying", Some(error.to_string()));
                self.retry_in_background(revocation);
            }
        }
    }

    /// Revokes without waiting (teardown of a call whose caller went away):
    /// local revocations happen now, remote ones in the background.
    pub(crate) fn revoke_later(self: &Arc<Self>, revocation: Revocation) {
        match self.undo_locally(&revocation.undo) {
            Some(outcome) => revocation.audit(outcome, None),
            None => self.spawn(revocation, false),
        }
    }

    /// Undoes what needs no server (deny-listing, dropping a host-held
    /// secret) and returns its audit outcome; `None` for remote revocations.
    fn undo_locally(&self, undo: &Undo) -> Option<&'static str> {
        match undo {
            Undo::DenyList { jti, exp } => {
                self.issuer.revoke(jti, *exp);
                Some("deny_listed")
            }
            Undo::Release => Some("released"),
            Undo::OpenbaoLease { .. } | Undo::OpenbaoToken { .. } | Undo::Exchanged { .. } => None,
        }
    }

    fn retry_in_background(self: &Arc<Self>, revocation: Revocation) {
        self.spawn(revocation, true);
    }

    fn spawn(self: &Arc<Self>, revocation: Revocation, failed_once: bool) {
        let revoker = self.clone();
        self.run_owned(async move {
            let delays = RETRY_DELAYS.iter().copied();
            let mut delays = std::iter::once(Duration::ZERO).filter(|_| !failed_once).chain(delays);
            loop {
                let Some(delay) = delays.next() else {
                    revocation.audit(
                        "gave_up",
                        Some("every retry failed; the lease journal keeps it for the next start".into()),
                    );
                    break;
                };
                tokio::time::sleep(delay).await;
                match revoker.attempt(&revocation).await {
                    Ok(outcome) => {
                        revocation.audit(outcome, None);
                        break;
                    }
                    Err(error) => revocation.audit("retrying", Some(error.to_string())),
                }
            }
        });
    }

    /// Runs `work` to completion on the runtime's side, whatever happens to
    /// the caller that started it: teardown, a mint in flight, a revocation.
    /// Dropping a caller's future never cancels it, and
    /// [`Revoker::settled`] waits for it, so a process about to exit lets it
    /// finish.
    pub(crate) fn run_owned(self: &Arc<Self>, work: impl Future<Output = ()> + Send + 'static) {
        self.work.started();
        let revoker = self.clone();
        let work = async move {
            work.await;
            revoker.work.ended();
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(work);
            }
            // No executor here (a task dropped outside one): a thread of its own.
            Err(_) => {
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                    if let Ok(runtime) = runtime {
                        runtime.block_on(work);
                    }
                });
            }
        }
    }

    /// Waits until nothing the runtime owns is running (teardowns, mints,
    /// revocations), or `within` has passed; returns how many still are.
    pub(crate) async fn settled(&self, within: Duration) -> usize {
        self.work.idle_within(within).await
    }
}

fn no_openbao() -> ProviderError {
    ProviderError::NotConfigured("no OpenBao server is configured".into())
}
