//! The runtime's credential providers, built once from the operator's
//! config and living as long as the runtime; and recovery, which revokes
//! what runtimes that stopped before their teardown left in the journal.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::audit::AuditScope;
use crate::credentials::config::ProviderConfig;
use crate::credentials::exchange::TokenExchange;
use crate::credentials::issuer::Issuer;
use crate::credentials::journal::{LeaseJournal, Leftover};
use crate::credentials::openbao::OpenBao;
use crate::credentials::revoke::{Revocation, Revoker, Undo};
use crate::policy::credential::ProviderKind;

/// The runtime's providers, built from the operator's config.
#[derive(Debug)]
pub(crate) struct Providers {
    pub(crate) issuer: Arc<Issuer>,
    pub(crate) config: ProviderConfig,
    pub(crate) openbao: Option<Arc<OpenBao>>,
    pub(crate) exchange: Option<Arc<TokenExchange>>,
    pub(crate) revoker: Arc<Revoker>,
}

impl Providers {
    /// Builds the providers; returns what a previous run left in the journal.
    pub(crate) fn new(
        config: ProviderConfig,
        issuer: Arc<Issuer>,
        journal: Option<LeaseJournal>,
        tls: &crate::transport::Tls,
    ) -> Providers {
        let openbao = config.openbao.clone().map(|c| Arc::new(OpenBao::new(c, tls.clone())));
        let exchange = config.oauth_token_exchange.clone().map(|c| Arc::new(TokenExchange::new(c, tls.clone())));
        let revoker = Arc::new(Revoker::new(issuer.clone(), openbao.clone(), exchange.clone(), journal));
        Providers { issuer, config, openbao, exchange, revoker }
    }

    /// Revokes what runtimes that stopped mid-task left in the journal
    /// (already adopted into this runtime's journal).
    pub(crate) fn recover(&self, leftovers: Vec<(Leftover, String)>, audit: &Arc<crate::audit::Audit>) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        for (leftover, task) in leftovers {
            let id = leftover.id();
            // Audited by lease id or accessor, as when they were minted.
            let (undo, credential, audit_id) = match leftover {
                Leftover::IssuerToken { jti, exp } => {
                    if exp > now {
                        // Deny-listed again until it expires; it stays journaled until then.
                        self.issuer.revoke(&jti, exp);
                    } else {
                        self.revoker.journal_closed(&id);
                    }
                    continue;
                }
                Leftover::OpenbaoLease { lease_id } => {
                    (Undo::OpenbaoLease { lease_id: lease_id.clone() }, "lease", lease_id)
                }
                Leftover::OpenbaoToken { accessor } => {
                    (Undo::OpenbaoToken { accessor: accessor.clone() }, "task token", accessor)
                }
            };
            let scope = AuditScope {
                audit: audit.clone(),
                task,
                tool: String::new(),
                principal: "toolcell".into(),
                actor: None,
                request: None,
            };
            self.revoker.revoke_later(Revocation {
                id: audit_id,
                undo,
                credential: credential.to_owned(),
                provider: ProviderKind::Openbao,
                invocation: None,
                audit: scope,
                reason: Some("left over by a runtime that stopped before its teardown".to_owned()),
            });
        }
    }
}
