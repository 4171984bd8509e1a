//! The broker: one invocation's credentials. It mints just in time,
//! hands the guest handles (never values, except for `reveal` credentials),
//! gives the egress hook the header to inject, and revokes everything at
//! teardown. It is shared by the guest's `credentials` import and the egress
//! hook, and closed after the store is dropped.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};

use crate::audit::{AuditKind, AuditScope, clip};
use crate::credentials::error::{CredentialError, MintError};
use crate::credentials::issuer::MintRequest;
use crate::credentials::journal::Leftover;
use crate::credentials::openbao::LeaseVars;
use crate::credentials::providers::Providers;
use crate::credentials::revoke::{Revocation, Undo};
use crate::credentials::task_token::{TaskCredentials, Workload};
use crate::grant::Grant;
use crate::meter::Meter;
use crate::policy::credential::{CredentialSpec, Exposure, ProviderKind};

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

/// Longest credential name a tool may ask for (manifest names are at most 64).
const MAX_NAME: usize = 64;
/// Longest scope a tool may ask for.
const MAX_SCOPE: usize = 256;
/// Most scopes in one `acquire`.
const MAX_SCOPES: usize = 32;

/// One invocation's credentials.
pub(crate) struct Broker {
    providers: Arc<Providers>,
    task: Arc<TaskCredentials>,
    /// The task's grant: its credentials are what this broker may mint.
    grant: Arc<Grant>,
    invocation: String,
    /// `exp` of everything minted is capped here.
    not_after: SystemTime,
    /// Counts refusals against the call's `max_refusals`.
    meter: Arc<Meter>,
    /// What the call holds, and whether it has ended. A plain mutex, never
    /// held across an await: teardown always sees every credential.
    state: std::sync::Mutex<BrokerState>,
    /// Serialises mints, so one credential is minted once per call.
    minting: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct BrokerState {
    held: Vec<Held>,
    /// Credentials minted (or being minted) by this call.
    mints: u32,
    closed: bool,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("invocation", &self.invocation).finish_non_exhaustive()
    }
}

impl Broker {
    pub(crate) fn new(
        providers: Arc<Providers>,
        task: Arc<TaskCredentials>,
        grant: Arc<Grant>,
        invocation: String,
        not_after: SystemTime,
        meter: Arc<Meter>,
    ) -> Broker {
        Broker {
            providers,
            task,
            grant,
            invocation,
            not_after,
            meter,
            state: std::sync::Mutex::new(BrokerState::default()),
            minting: tokio::sync::Mutex::new(()),
        }
    }

    /// A broker for `describe`, whose grant holds no credentials: every acquire is denied.
    pub(crate) fn granting_nothing(
        providers: Arc<Providers>,
        grant: Arc<Grant>,
        audit: AuditScope,
        invocation: String,
        meter: Arc<Meter>,
    ) -> Broker {
        let workload = Workload {
            id: String::new(),
            principal: audit.principal.clone(),
            tool: audit.tool.clone(),
            task: audit.task.clone(),
        };
        let now = SystemTime::now();
        let task = Arc::new(TaskCredentials::new(providers.clone(), workload, now, audit, &[]));
        Broker::new(providers, task, grant, invocation, now, meter)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BrokerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Audits a refusal, counts it against `max_refusals`, and returns what
    /// the tool sees.
    fn refuse(&self, name: &str, error: MintError) -> CredentialError {
        let (decision, reason, shown) = match error {
            MintError::Refused(CredentialError::Denied(reason)) => {
                ("denied", reason.clone(), CredentialError::Denied(reason))
            }
            MintError::Refused(CredentialError::Unavailable(reason)) => {
                ("unavailable", reason.clone(), CredentialError::Unavailable(reason))
            }
            MintError::Provider { provider, detail } => (
                "unavailable",
                detail,
                CredentialError::Unavailable(format!(
                    "credential `{}`: the {} provider could not mint it (its reason is in the audit trail of \
                     invocation {})",
                    clip(name, MAX_NAME),
                    provider.name(),
                    self.invocation
                )),
            ),
        };
        if self.meter.hit().is_some() {
            // The call is being stopped: nothing more is recorded for it.
            return shown;
        }
        self.task.audit.record_or_log(AuditKind::CredentialRefused {
            invocation: self.invocation.clone(),
            credential: clip(name, MAX_NAME),
            decision,
            reason: clip(&reason, 1024),
        });
        // A tool looping on refusals is stopped by the call's limit.
        let _ = self.meter.refused();
        shown
    }

    /// The guest's `acquire`: the credential `name` with `scopes` (empty:
    /// all the grant allows), minted now unless this call already holds it.
    /// Returns the handle's index.
    pub(crate) async fn acquire(self: &Arc<Self>, name: &str, scopes: &[String]) -> Result<usize, CredentialError> {
        let deny = |reason: String| self.refuse(name, MintError::Refused(CredentialError::Denied(reason)));
        if name.len() > MAX_NAME {
            return Err(deny(format!("a credential name is at most {MAX_NAME} bytes")));
        }
        if scopes.len() > MAX_SCOPES || scopes.iter().any(|s| s.len() > MAX_SCOPE) {
            return Err(deny(format!("an acquire asks for at most {MAX_SCOPES} scopes of at most {MAX_SCOPE} bytes")));
        }
        let Some(spec) = self.grant.credentials.iter().find(|s| s.name == name) else {
            let granted: Vec<&str> = self.grant.credentials.iter().map(|s| s.name.as_str()).collect();
            return Err(deny(format!(
                "credential `{name}` is not granted to this task (granted: {})",
                if granted.is_empty() { "none".to_owned() } else { granted.join(", ") }
            )));
        };
        let scopes = if scopes.is_empty() { spec.scopes.clone() } else { scopes.to_vec() };
        if let Some(extra) = scopes.iter().find(|s| !spec.scopes.contains(s)) {
            return Err(deny(format!(
                "scope `{extra}` is beyond what credential `{name}` grants ([{}])",
                spec.scopes.join(" ")
            )));
        }
        self.obtain(spec, scopes, false).await
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
            let max = self.grant.limits.max_credentials;
            if state.mints >= max {
                drop(state);
                return Err(self.refuse(
                    &spec.name,
                    MintError::Refused(CredentialError::Denied(format!(
                        "this call has minted its limit of {max} credentials (limits.max_credentials)"
                    ))),
                ));
            }
            state.mints += 1;
        }
        let left = self.not_after.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
        if left < Duration::from_secs(1) {
            return Err(self.refuse(
                &spec.name,
                MintError::Refused(CredentialError::Unavailable(format!(
                    "credential `{}`: less than a second is left before the call's deadline",
                    spec.name
                ))),
            ));
        }
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
                Err(error) => Err(broker.refuse(&owned.name, error)),
            };
            let _ = sender.send(outcome);
        });
        match tokio::time::timeout(left, receiver).await {
            Ok(outcome) => {
                outcome.unwrap_or_else(|_| Err(CredentialError::Unavailable("the mint was abandoned".into())))
            }
            Err(_) => Err(self.refuse(
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
        let state = self.state();
        let Some(held) = state.held.get(index) else {
            drop(state);
            return Err(
                self.refuse("", MintError::Refused(CredentialError::Denied("no such credential handle".into())))
            );
        };
        let spec = self.grant.credentials.iter().find(|s| s.name == held.name).expect("held credentials are granted");
        match &spec.exposure {
            Exposure::Reveal => {
                self.task.audit.record_or_log(AuditKind::CredentialRevealed {
                    invocation: self.invocation.clone(),
                    credential: held.name.clone(),
                    id: held.id.clone(),
                });
                Ok(zeroize::Zeroizing::new(held.value.expose_secret().to_owned()))
            }
            Exposure::Inject(injection) => {
                let (name, reason) = (
                    held.name.clone(),
                    format!(
                        "credential `{}` is injected by the host into requests matching {}; it is never revealed",
                        held.name,
                        injection.egress.join(", ")
                    ),
                );
                drop(state);
                Err(self.refuse(&name, MintError::Refused(CredentialError::Denied(reason))))
            }
        }
    }

    /// The headers to add to a request the egress rule `rule` allowed, to
    /// `host`, after its addresses passed the checks. Mints on first use:
    /// credentials the tool acquired are used as acquired, the others with
    /// all the grant's scopes.
    pub(crate) async fn injections(self: &Arc<Self>, rule: &str, host: &str) -> Result<Vec<Injected>, CredentialError> {
        let mut out = Vec::new();
        for spec in self.grant.credentials.iter() {
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
                return Err(self.refuse(
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
                invocation: self.invocation.clone(),
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
            invocation: Some(self.invocation.clone()),
            credential: spec.name.clone(),
            provider: spec.provider.name(),
            scopes: held.scopes.clone(),
            audience: held.audience.clone(),
            id: held.id.clone(),
            expires_at: held.expires_at,
            exposure: match spec.exposure {
                Exposure::Inject(_) => "inject",
                Exposure::Reveal => "reveal",
            },
        });
        Ok(held)
    }

    fn issuer_token(
        &self,
        audience: &str,
        scopes: &[String],
        ttl: Duration,
    ) -> Result<(SecretString, Undo, String, u64), MintError> {
        let workload = &self.task.workload;
        let minted = self.providers.issuer.mint(&MintRequest {
            subject: workload.id.clone(),
            principal: workload.principal.clone(),
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
            .map_err(|detail| MintError::Provider { provider: ProviderKind::Issuer, detail })?;
        Ok((minted.token, Undo::DenyList { jti: minted.jti.clone(), exp: minted.exp }, minted.jti, minted.exp))
    }

    async fn mint_from_provider(
        &self,
        spec: &CredentialSpec,
        scopes: &[String],
        ttl: Duration,
    ) -> Result<Held, MintError> {
        let failed = |detail: String| MintError::Provider {
            provider: spec.provider,
            detail: format!("credential `{}`: {detail}", spec.name),
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
                        failed(format!("the runtime config has no static secret for audience `{}`", spec.audience))
                    })?;
                let value = secret.secret.read().map_err(failed)?;
                let expires_at = self.not_after.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                Ok(held(value, format!("static:{}", spec.audience), Undo::Release, expires_at, Vec::new()))
            }
            ProviderKind::Openbao => {
                let openbao = self
                    .providers
                    .openbao
                    .as_ref()
                    .ok_or_else(|| failed("the runtime config has no [openbao] server".into()))?;
                let secret = openbao.config.secrets.iter().find(|s| s.audience == spec.audience).ok_or_else(|| {
                    failed(format!("the runtime config has no [[openbao.secrets]] for audience `{}`", spec.audience))
                })?;
                if scopes.is_empty() {
                    return Err(MintError::Refused(CredentialError::Denied(format!(
                        "credential `{}` grants no OpenBao policy, so there is nothing to lease with",
                        spec.name
                    ))));
                }
                let child = self.task.child_token(openbao).await?;
                let workload = &self.task.workload;
                let vars = LeaseVars { task: &workload.task, tool: &workload.tool, invocation: &self.invocation, ttl };
                let lease = openbao.lease(&child, secret, &vars).await.map_err(failed)?;
                let leftover = Leftover::OpenbaoLease { lease_id: lease.lease_id.clone() };
                if let Err(error) = self.providers.revoker.journal(&leftover, &workload.task) {
                    let _ = openbao.revoke_lease(&lease.lease_id).await;
                    return Err(failed(error));
                }
                let undo = Undo::OpenbaoLease { lease_id: lease.lease_id.clone() };
                Ok(held(lease.value, lease.lease_id, undo, lease.expires_at, scopes.to_vec()))
            }
            ProviderKind::OauthTokenExchange => {
                let exchange = self
                    .providers
                    .exchange
                    .as_ref()
                    .ok_or_else(|| failed("the runtime config has no [oauth_token_exchange] server".into()))?;
                // The subject token: the task's own issuer token, for the
                // authorization server, carrying the scopes asked for.
                let (subject, subject_undo, subject_jti, _) =
                    self.issuer_token(&exchange.config.subject_audience, scopes, ttl)?;
                let exchanged = exchange.exchange(&subject, &spec.audience, scopes, self.not_after).await;
                // The subject token's job is done either way.
                self.providers
                    .revoker
                    .revoke(Revocation {
                        undo: subject_undo,
                        credential: format!("{} (subject token)", spec.name),
                        provider: ProviderKind::Issuer,
                        id: subject_jti,
                        invocation: Some(self.invocation.clone()),
                        audit: self.task.audit.clone(),
                        reason: Some("exchanged".into()),
                    })
                    .await;
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
        if state.mints > 0 {
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
            invocation: Some(self.invocation.clone()),
            audit: self.task.audit.clone(),
            reason: None,
        }
    }
}

/// An exchanged token's id for the audit trail: a digest prefix, which names
/// it without revealing it.
fn token_fingerprint(token: &SecretString) -> String {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(token.expose_secret().as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
