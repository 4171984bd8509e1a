//! The broker: one invocation's credentials. It mints just in time,
//! hands the guest handles (never values, except for `reveal` credentials),
//! gives the egress hook the header to inject, and revokes everything at
//! teardown. It is shared by the guest's `credentials` import and the egress
//! hook, and closed after the store is dropped.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};

use crate::audit::{AuditKind, AuditScope, clip};
use crate::credentials::error::{CredentialError, MintError, ProviderError};
use crate::credentials::issuer::MintRequest;
use crate::credentials::journal::Leftover;
use crate::credentials::openbao::LeaseVars;
use crate::credentials::providers::Providers;
use crate::credentials::revoke::{Revocation, Undo};
use crate::credentials::task_token::{TaskCredentials, Workload};
use crate::decide::credential::{Acquire, MAX_NAME, Mint, Reveal, refused};
use crate::decide::{CallContext, Denial, Refused, Request, decide, govern, record_refusal};
use crate::oversight::HeldCredential;
use crate::policy::credential::{CredentialSpec, Exposure, ProviderKind};
use crate::request_policy::PolicyAction;

/// One credential minted for an invocation.
struct Held {
    name: String,
    provider: ProviderKind,
    scopes: Vec<String>,
    audience: String,
    expires_at: u64,
    /// The secret. Zeroized when dropped (`SecretString`).
    value: SecretString,
    /// `jti`, lease id, or a name for a static secret.
    id: String,
    undo: Undo,
}

/// What a handle shows the guest.
#[derive(Clone, Debug)]
pub struct CredentialView {
    /// The manifest's name for it.
    pub name: String,
    /// Scopes it carries.
    pub scopes: Vec<String>,
    /// Its audience.
    pub audience: String,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
}

/// A header to add to an outgoing request.
pub(crate) struct Injected {
    pub(crate) header: http::HeaderName,
    pub(crate) value: http::HeaderValue,
}

/// One invocation's credentials.
pub(crate) struct Broker {
    providers: Arc<Providers>,
    task: Arc<TaskCredentials>,
    /// The call: its grant's credentials are what this broker may mint.
    call: Arc<CallContext>,
    /// `exp` of everything minted is capped here.
    not_after: SystemTime,
    /// What the call holds, and whether it has ended. A plain mutex, never
    /// held across an await: teardown always sees every credential.
    state: std::sync::Mutex<BrokerState>,
    /// Serialises mints, so one credential is minted once per call.
    minting: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct BrokerState {
    held: Vec<Held>,
    /// A mint was asked for (allowed or not): teardown cannot close inline.
    minting: bool,
    closed: bool,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("invocation", &self.call.invocation).finish_non_exhaustive()
    }
}

impl Broker {
    pub(crate) fn new(
        providers: Arc<Providers>,
        task: Arc<TaskCredentials>,
        call: Arc<CallContext>,
        not_after: SystemTime,
    ) -> Broker {
        Broker {
            providers,
            task,
            call,
            not_after,
            state: std::sync::Mutex::new(BrokerState::default()),
            minting: tokio::sync::Mutex::new(()),
        }
    }

    /// A broker for `describe`, whose grant holds no credentials: every acquire is denied.
    pub(crate) fn granting_nothing(providers: Arc<Providers>, call: Arc<CallContext>, audit: AuditScope) -> Broker {
        let workload = Workload {
            id: String::new(),
            principal: audit.principal.clone(),
            actor: None,
            tool: audit.tool.clone(),
            task: audit.task.clone(),
        };
        let now = SystemTime::now();
        let task = Arc::new(TaskCredentials::new(providers.clone(), workload, now, audit, &[]));
        Broker::new(providers, task, call, now)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BrokerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the decision point; a denial is what the tool sees.
    fn decide<A: crate::decide::Action>(&self, action: A) -> Result<A::Allowed, CredentialError> {
        decide(Request { who: &self.task.audit, call: Some(&self.call), action }).map_err(shown)
    }

    /// A mint that failed after it was allowed: recorded and counted as a
    /// refusal (a tool looping on them is stopped by `max_refusals`), and
    /// shown to the tool without the provider's own words.
    fn failed(&self, name: &str, error: MintError) -> CredentialError {
        let (decision, reason, shown) = match error {
            MintError::Refused(CredentialError::Denied(reason)) => {
                (Refused::Denied, reason.clone(), CredentialError::Denied(reason))
            }
            MintError::Refused(CredentialError::Unavailable(reason)) => {
                (Refused::Unavailable, reason.clone(), CredentialError::Unavailable(reason))
            }
            MintError::Provider { provider, cause } => (
                Refused::Unavailable,
                cause.to_string(),
                CredentialError::Unavailable(format!(
                    "credential `{}`: the {} provider could not mint it (its reason is in the audit trail of \
                     invocation {})",
                    clip(name, MAX_NAME),
                    provider.name(),
                    self.call.invocation
                )),
            ),
        };
        record_refusal(&self.task.audit, Some(&self.call), refused(Some(&self.call), name, decision, &reason));
        shown
    }

    /// The guest's `acquire`: the credential `name` with `scopes` (empty:
    /// all the grant allows), minted now unless this call already holds it.
    /// Returns the handle's index.
    pub(crate) async fn acquire(self: &Arc<Self>, name: &str, scopes: &[String]) -> Result<usize, CredentialError> {
        let (spec, scopes) = self.decide(Acquire { name, scopes })?;
        self.obtain(&spec, scopes, false).await
    }

    /// The index of a credential the call holds, minting it first if it
    /// holds none. `any_scopes` takes a held one of that name whatever its
    /// scopes (injection uses what the tool acquired).
    async fn obtain(
        self: &Arc<Self>,
        spec: &CredentialSpec,
        scopes: Vec<String>,
        any_scopes: bool,
    ) -> Result<usize, CredentialError> {
        let _minting = self.minting.lock().await;
        {
            let mut state = self.state();
            if state.closed {
                return Err(CredentialError::Unavailable("the call has ended".into()));
            }
            let found = state.held.iter().rposition(|h| h.name == spec.name && (any_scopes || h.scopes == scopes));
            if let Some(index) = found {
                return Ok(index);
            }
            // Marked under the lock that `close_if_unused` takes: a call
            // that starts a mint is torn down by runtime-owned work.
            state.minting = true;
        }
        let left = self.decide(Mint { spec, not_after: self.not_after })?;
        let governing = std::time::Instant::now();
        // Then request-time policy, and a person where it or the manifest asks.
        let approval = spec.approval.as_ref().filter(|a| a.covers_any(scopes.iter().map(String::as_str)));
        let asked = PolicyAction::Credential {
            name: spec.name.clone(),
            provider: spec.provider.name().to_owned(),
            audience: spec.audience.clone(),
            scopes: scopes.clone(),
            lifetime_seconds: spec.max_ttl.0.min(left).as_secs(),
            exposure: spec.exposure.name().to_owned(),
        };
        let action = Mint { spec, not_after: self.not_after };
        govern(
            Request { who: &self.task.audit, call: Some(&self.call), action },
            asked,
            approval.map(|a| a.reason.as_str()),
        )
        .await
        .map_err(shown)?;
        // What waiting for a person took is no longer left for the mint.
        let left = left.saturating_sub(governing.elapsed());
        // The mint runs on the runtime's side and is never dropped half-way
        // (each provider request has its own timeout): if the call ends, or
        // stops waiting at its deadline, while a provider answers, what the
        // mint made is still either held (and revoked at teardown) or, when
        // the call has ended, revoked at once.
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let broker = self.clone();
        let owned = spec.clone();
        self.providers.revoker.run_owned(async move {
            let outcome = match broker.mint(&owned, scopes).await {
                Ok(held) => broker.keep(held),
                Err(error) => Err(broker.failed(&owned.name, error)),
            };
            let _ = sender.send(outcome);
        });
        match tokio::time::timeout(left, receiver).await {
            Ok(outcome) => {
                outcome.unwrap_or_else(|_| Err(CredentialError::Unavailable("the mint was abandoned".into())))
            }
            Err(_) => Err(self.failed(
                &spec.name,
                MintError::Refused(CredentialError::Unavailable(format!(
                    "credential `{}`: the {} provider did not answer before the call's deadline",
                    spec.name,
                    spec.provider.name()
                ))),
            )),
        }
    }

    /// Keeps a fresh credential for the call, or revokes it at once when the
    /// call ended while it was being minted.
    fn keep(&self, held: Held) -> Result<usize, CredentialError> {
        let mut state = self.state();
        if state.closed {
            drop(state);
            let mut revocation = self.revocation(held);
            revocation.reason = Some("minted after its call ended".into());
            self.providers.revoker.revoke_later(revocation);
            return Err(CredentialError::Unavailable("the call has ended".into()));
        }
        state.held.push(held);
        Ok(state.held.len() - 1)
    }

    /// What a handle shows the guest.
    pub(crate) fn view(&self, index: usize) -> Option<CredentialView> {
        let state = self.state();
        let held = state.held.get(index)?;
        Some(CredentialView {
            name: held.name.clone(),
            scopes: held.scopes.clone(),
            audience: held.audience.clone(),
            expires_at: held.expires_at,
        })
    }

    /// The guest's `reveal`: the value, only for `reveal` exposure. The copy
    /// handed over is zeroized when the guest's string is lowered.
    pub(crate) fn reveal(&self, index: usize) -> Result<zeroize::Zeroizing<String>, CredentialError> {
        let name = self.state().held.get(index).map(|held| held.name.clone());
        let spec = name.map(|name| {
            self.call.grant.credentials.iter().find(|s| s.name == name).expect("held credentials are granted")
        });
        self.decide(Reveal { spec })?;
        let state = self.state();
        let Some(held) = state.held.get(index) else {
            return Err(CredentialError::Unavailable("the call has ended".into()));
        };
        self.task.audit.record_or_log(AuditKind::CredentialRevealed {
            invocation: self.call.invocation.clone(),
            credential: held.name.clone(),
            id: held.id.clone(),
        });
        Ok(zeroize::Zeroizing::new(held.value.expose_secret().to_owned()))
    }

    /// The headers to add to a request the egress rule `rule` allowed, to
    /// `host`, after its addresses passed the checks. Mints on first use:
    /// credentials the tool acquired are used as acquired, the others with
    /// all the grant's scopes.
    pub(crate) async fn injections(self: &Arc<Self>, rule: &str, host: &str) -> Result<Vec<Injected>, CredentialError> {
        let mut out = Vec::new();
        for spec in self.call.grant.credentials.iter() {
            let Exposure::Inject(injection) = &spec.exposure else { continue };
            if !injection.egress.iter().any(|bound| bound == rule) {
                continue;
            }
            let index = self.obtain(spec, spec.scopes.clone(), true).await?;
            let state = self.state();
            let Some(credential) = state.held.get(index) else {
                return Err(CredentialError::Unavailable("the call has ended".into()));
            };
            let text = zeroize::Zeroizing::new(injection.format.replace("{token}", credential.value.expose_secret()));
            let Ok(mut value) = http::HeaderValue::from_str(&text) else {
                drop(state);
                return Err(self.failed(
                    &spec.name,
                    MintError::Refused(CredentialError::Unavailable(format!(
                        "credential `{}` holds bytes a `{}` header cannot carry",
                        spec.name, injection.header
                    ))),
                ));
            };
            value.set_sensitive(true);
            let header = http::HeaderName::from_bytes(injection.header.as_bytes()).expect("checked in the manifest");
            self.task.audit.record_or_log(AuditKind::CredentialInjected {
                invocation: self.call.invocation.clone(),
                credential: spec.name.clone(),
                id: credential.id.clone(),
                rule: rule.to_owned(),
                header: injection.header.clone(),
                host: host.to_owned(),
            });
            out.push(Injected { header, value });
        }
        Ok(out)
    }

    /// Mints one credential, its life capped at the invocation's deadline.
    async fn mint(&self, spec: &CredentialSpec, scopes: Vec<String>) -> Result<Held, MintError> {
        let left = self.not_after.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
        let ttl = spec.max_ttl.0.min(left).max(Duration::from_secs(1));
        let held = self.mint_from_provider(spec, &scopes, ttl).await?;
        self.task.audit.record_or_log(AuditKind::CredentialMinted {
            invocation: Some(self.call.invocation.clone()),
            credential: spec.name.clone(),
            provider: spec.provider.name(),
            scopes: held.scopes.clone(),
            audience: held.audience.clone(),
            id: held.id.clone(),
            expires_at: held.expires_at,
            exposure: spec.exposure.name(),
        });
        Ok(held)
    }

    /// An issuer token for the workload (its `act` chain: the principal,
    /// then the agent acting for the principal).
    fn issuer_token(
        &self,
        audience: &str,
        scopes: &[String],
        ttl: Duration,
    ) -> Result<(SecretString, Undo, String, u64), MintError> {
        let workload = &self.task.workload;
        self.issuer_token_for(workload.id.clone(), Some(workload.delegation()), audience, scopes, ttl)
    }

    /// An issuer token for `subject` acting through `act`, journalled for
    /// revocation like every issuer token.
    fn issuer_token_for(
        &self,
        subject: String,
        act: Option<crate::identity::Actor>,
        audience: &str,
        scopes: &[String],
        ttl: Duration,
    ) -> Result<(SecretString, Undo, String, u64), MintError> {
        let workload = &self.task.workload;
        let minted = self.providers.issuer.mint(&MintRequest {
            subject,
            act,
            client_id: workload.tool.clone(),
            audience: audience.to_owned(),
            scopes: scopes.to_vec(),
            max_ttl: ttl,
            not_after: self.not_after,
        });
        let leftover = Leftover::IssuerToken { jti: minted.jti.clone(), exp: minted.exp };
        self.providers
            .revoker
            .journal(&leftover, &workload.task)
            .map_err(|error| MintError::Provider { provider: ProviderKind::Issuer, cause: error.into() })?;
        Ok((minted.token, Undo::DenyList { jti: minted.jti.clone(), exp: minted.exp }, minted.jti, minted.exp))
    }

    async fn mint_from_provider(
        &self,
        spec: &CredentialSpec,
        scopes: &[String],
        ttl: Duration,
    ) -> Result<Held, MintError> {
        let failed = |cause: ProviderError| MintError::Provider {
            provider: spec.provider,
            cause: cause.during(format!("credential `{}`", spec.name)),
        };
        let held = |value, id, undo, expires_at, scopes: Vec<String>| Held {
            name: spec.name.clone(),
            provider: spec.provider,
            scopes,
            audience: spec.audience.clone(),
            expires_at,
            value,
            id,
            undo,
        };
        match spec.provider {
            ProviderKind::Issuer => {
                let (token, undo, jti, exp) = self.issuer_token(&spec.audience, scopes, ttl)?;
                Ok(held(token, jti, undo, exp, scopes.to_vec()))
            }
            ProviderKind::Static => {
                let secret =
                    self.providers.config.statics.iter().find(|s| s.audience == spec.audience).ok_or_else(|| {
                        failed(ProviderError::NotConfigured(format!(
                            "the runtime config has no static secret for audience `{}`",
                            spec.audience
                        )))
                    })?;
                let value =
                    secret.secret.read().map_err(|cause| failed(ProviderError::Secret { what: None, cause }))?;
                let expires_at = self.not_after.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                Ok(held(value, format!("static:{}", spec.audience), Undo::Release, expires_at, Vec::new()))
            }
            ProviderKind::Openbao => {
                let openbao = self.providers.openbao.as_ref().ok_or_else(|| {
                    failed(ProviderError::NotConfigured("the runtime config has no [openbao] server".into()))
                })?;
                let secret = openbao.config.secrets.iter().find(|s| s.audience == spec.audience).ok_or_else(|| {
                    failed(ProviderError::NotConfigured(format!(
                        "the runtime config has no [[openbao.secrets]] for audience `{}`",
                        spec.audience
                    )))
                })?;
                if scopes.is_empty() {
                    return Err(MintError::Refused(CredentialError::Denied(format!(
                        "credential `{}` grants no OpenBao policy, so there is nothing to lease with",
                        spec.name
                    ))));
                }
                let child = self.task.child_token(openbao).await?;
                let workload = &self.task.workload;
                let vars =
                    LeaseVars { task: &workload.task, tool: &workload.tool, invocation: &self.call.invocation, ttl };
                let lease = openbao.lease(&child, secret, &vars).await.map_err(failed)?;
                let leftover = Leftover::OpenbaoLease { lease_id: lease.lease_id.clone() };
                if let Err(error) = self.providers.revoker.journal(&leftover, &workload.task) {
                    let _ = openbao.revoke_lease(&lease.lease_id).await;
                    return Err(failed(error.into()));
                }
                let undo = Undo::OpenbaoLease { lease_id: lease.lease_id.clone() };
                Ok(held(lease.value, lease.lease_id, undo, lease.expires_at, scopes.to_vec()))
            }
            ProviderKind::OauthTokenExchange => {
                let exchange = self.providers.exchange.as_ref().ok_or_else(|| {
                    failed(ProviderError::NotConfigured(
                        "the runtime config has no [oauth_token_exchange] server".into(),
                    ))
                })?;
                // The subject token: the task's own issuer token, for the
                // authorization server, carrying the scopes asked for.
                let (subject, subject_undo, subject_jti, _) =
                    self.issuer_token(&exchange.config.subject_audience, scopes, ttl)?;
                // Where configured, the caller's identity goes as the actor
                // token (RFC 8693 §2.1): toolcell's own token for the
                // principal, with the agent as its `act` — never the
                // caller's own access token.
                let actor = if exchange.config.send_actor_token {
                    let workload = &self.task.workload;
                    let audience = &exchange.config.subject_audience;
                    Some(self.issuer_token_for(
                        workload.principal.clone(),
                        workload.actor.clone(),
                        audience,
                        &[],
                        ttl,
                    )?)
                } else {
                    None
                };
                let actor_token = actor.as_ref().map(|(token, ..)| token);
                let exchanged = exchange.exchange(&subject, actor_token, &spec.audience, scopes, self.not_after).await;
                // The subject (and actor) token's job is done either way.
                let used = [(subject_undo, subject_jti, "subject token")]
                    .into_iter()
                    .chain(actor.map(|(_, undo, jti, _)| (undo, jti, "actor token")));
                for (undo, id, what) in used {
                    self.providers
                        .revoker
                        .revoke(Revocation {
                            undo,
                            credential: format!("{} ({what})", spec.name),
                            provider: ProviderKind::Issuer,
                            id,
                            invocation: Some(self.call.invocation.clone()),
                            audit: self.task.audit.clone(),
                            reason: Some("exchanged".into()),
                        })
                        .await;
                }
                let exchanged = exchanged.map_err(failed)?;
                let id = token_fingerprint(&exchanged.token);
                let undo = Undo::Exchanged { token: exchanged.token.clone() };
                Ok(held(exchanged.token, id, undo, exchanged.expires_at, exchanged.scopes))
            }
        }
    }

    /// Marks the call ended and takes what it holds: a mint that completes
    /// after this finds the call closed and revokes its credential itself.
    fn take_for_close(&self) -> Vec<Held> {
        let mut state = self.state();
        state.closed = true;
        std::mem::take(&mut state.held)
    }

    /// Closes the call's credentials now if it never started a mint: there
    /// is nothing to revoke, and no mint can start after this. Returns false
    /// (and closes nothing) when a mint was started.
    pub(crate) fn close_if_unused(&self) -> bool {
        let mut state = self.state();
        if state.minting {
            return false;
        }
        state.closed = true;
        true
    }

    /// Teardown: revokes every credential of the call, waiting for the
    /// remote revocations' first attempt (failures go on in the background).
    /// Callers run it as runtime-owned work, so it completes even when the
    /// caller's future is dropped.
    pub(crate) async fn close(&self) {
        for credential in self.take_for_close() {
            let revocation = self.revocation(credential);
            self.providers.revoker.revoke(revocation).await;
        }
    }

    fn revocation(&self, held: Held) -> Revocation {
        // `held.value` is dropped (and zeroized) here; an exchanged token's
        // copy lives in `undo` until it is revoked.
        Revocation {
            undo: held.undo,
            credential: held.name,
            provider: held.provider,
            id: held.id,
            invocation: Some(self.call.invocation.clone()),
            audit: self.task.audit.clone(),
            // A kill's revocations say which kill, and why.
            reason: self.call.meter.killed().map(|kill| kill.to_string()),
        }
    }

    /// What the call holds now, by id: never a value.
    pub(crate) fn held(&self) -> Vec<HeldCredential> {
        self.state()
            .held
            .iter()
            .map(|held| HeldCredential {
                name: held.name.clone(),
                provider: held.provider.name().to_owned(),
                id: held.id.clone(),
                expires_at: held.expires_at,
            })
            .collect()
    }
}

/// An exchanged token's id for the audit trail: a digest prefix, which names
/// it without revealing it.
fn token_fingerprint(token: &SecretString) -> String {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(token.expose_secret().as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// What the tool sees of a denial.
fn shown(denial: Denial) -> CredentialError {
    match denial.decision {
        Refused::Denied => CredentialError::Denied(denial.reason),
        Refused::Unavailable => CredentialError::Unavailable(denial.reason),
    }
}
