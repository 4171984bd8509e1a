//! Human approval: an action a policy (`@approval`) or the manifest marks
//! waits, within its call's deadline, until a person approves or denies it.
//!
//! An approval request is bound to the digest of that exact action, is
//! answered once (a second answer is refused as a replay), and expires
//! (5 minutes by default, `[approvals] expire`). No answer in time is a
//! denial. Answers come through the admin interface (`toolcell approvals`),
//! through a per-call [`ApprovalChannel`] (MCP elicitation to the client
//! that made the call), or both: the first answer wins. The approver must
//! not be the principal the call acts for unless the operator allows
//! self-approval.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{broadcast, oneshot};

use crate::grant::GrantSummary;
use crate::units::TimeSpan;

/// The operator's approval settings (`[approvals]` in the runtime config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// How long a request waits for an answer (the call's deadline can cut it shorter).
    pub expire: TimeSpan,
    /// The principal a call acts for may approve it.
    pub allow_self_approval: bool,
    /// Ask the MCP client that made the call, where it declared elicitation.
    /// Its answer is the principal's own (the person at the client is who
    /// the call acts for), so it is used only with `allow_self_approval`.
    pub elicitation: bool,
    /// Where each new request is POSTed as JSON (chat or ticket integrations).
    pub webhook: Option<String>,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings {
            expire: TimeSpan(Duration::from_secs(300)),
            allow_self_approval: false,
            elicitation: true,
            webhook: None,
        }
    }
}

/// What an approver is shown, and what the webhook receives.
#[derive(Clone, Debug, Serialize)]
pub struct ApprovalRequest {
    /// The request's id, for `toolcell approvals approve ID`.
    pub id: String,
    /// SHA-256 (hex) of exactly what is asked for; an answer may name it
    /// to be sure it approves what it saw.
    pub digest: String,
    pub principal: String,
    pub tool: String,
    pub task: String,
    pub workload: String,
    pub invocation: String,
    /// `call`, `http`, `credential` or `socket`.
    pub action: &'static str,
    /// Exactly what: `POST https://host:443/path`, a credential and its
    /// scopes, or the tool call with the digest of its input.
    pub what: String,
    /// Why a person must approve (the policy's or manifest's words).
    pub why: String,
    /// The policies that asked for the approval (`manifest` for the manifest).
    pub policies: Vec<String>,
    /// Everything the task can reach: its grant.
    pub reach: GrantSummary,
    /// RFC 3339, UTC.
    pub raised_at: String,
    pub expires_at: String,
}

/// How an approval request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalOutcome {
    Approved {
        approver: String,
        channel: String,
    },
    Denied {
        approver: String,
        channel: String,
        reason: Option<String>,
    },
    /// No answer in time (the request's expiry or the call's deadline).
    Expired,
}

/// An answer that was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("no approval request `{0}` (see `toolcell approvals list`)")]
    Unknown(String),
    #[error("approval request `{0}` has expired; its action was denied")]
    Expired(String),
    #[error("approval request `{id}` was already {how}; an approval is used once")]
    Answered { id: String, how: &'static str },
    #[error("approval request `{id}` is for digest {actual}, not {given}: the action is not the one you reviewed")]
    DigestMismatch { id: String, actual: String, given: String },
    #[error("`{approver}` cannot answer approval request `{id}`: it acts for them (self-approval is off)")]
    SelfApproval { id: String, approver: String },
}

/// A way to ask for an answer that belongs to one call: the MCP client
/// that made it (elicitation). `None`: this channel cannot ask.
pub trait ApprovalChannel: Send + Sync + fmt::Debug {
    /// Asks; resolves to `Some(approved, approver)` once answered.
    fn ask(&self, request: ApprovalRequest) -> Pin<Box<dyn Future<Output = Option<ChannelAnswer>> + Send>>;
}

/// A channel's answer.
#[derive(Clone, Debug)]
pub struct ChannelAnswer {
    pub approve: bool,
    /// Who answered, as the channel knows them.
    pub approver: String,
    /// The channel's name (`elicitation`).
    pub channel: String,
    pub reason: Option<String>,
}

struct Pending {
    request: ApprovalRequest,
    answer: oneshot::Sender<ApprovalOutcome>,
}

/// How many answered or expired ids are remembered, to tell a replay from an unknown id.
const REMEMBERED: usize = 4096;

/// The runtime's approval requests.
pub struct Approvals {
    settings: Mutex<ApprovalSettings>,
    pending: Mutex<HashMap<String, Pending>>,
    /// Ids answered or expired, newest last: `approved`, `denied` or `expired`.
    finished: Mutex<VecDeque<(String, &'static str)>>,
    raised: broadcast::Sender<ApprovalRequest>,
}

impl fmt::Debug for Approvals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Approvals").field("pending", &self.lock_pending().len()).finish()
    }
}

/// What [`Approvals::ask`] is given besides the request.
pub(crate) struct Asking {
    pub(crate) request: ApprovalRequest,
    /// When it expires (`Approvals::expiry`, which its `expires_at` shows):
    /// no answer by then is a denial.
    pub(crate) until: Instant,
    pub(crate) channel: Option<Arc<dyn ApprovalChannel>>,
}

impl Approvals {
    pub fn new(settings: ApprovalSettings) -> Approvals {
        let (raised, _) = broadcast::channel(256);
        Approvals {
            settings: Mutex::new(settings),
            pending: Mutex::new(HashMap::new()),
            finished: Mutex::new(VecDeque::new()),
            raised,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> ApprovalSettings {
        self.settings.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the settings (a config reload); requests already waiting keep their expiry.
    pub fn set_settings(&self, settings: ApprovalSettings) {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner()) = settings;
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// New requests as they are raised (for a webhook).
    pub fn subscribe(&self) -> broadcast::Receiver<ApprovalRequest> {
        self.raised.subscribe()
    }

    /// The requests waiting, oldest first.
    pub fn list(&self) -> Vec<ApprovalRequest> {
        let mut list: Vec<ApprovalRequest> = self.lock_pending().values().map(|p| p.request.clone()).collect();
        list.sort_by(|a, b| a.raised_at.cmp(&b.raised_at).then(a.id.cmp(&b.id)));
        list
    }

    /// One waiting request.
    pub fn show(&self, id: &str) -> Result<ApprovalRequest, ApprovalError> {
        match self.lock_pending().get(id) {
            Some(pending) => Ok(pending.request.clone()),
            None => Err(self.not_pending(id)),
        }
    }

    /// Why `id` is not waiting: answered, expired, or never raised.
    fn not_pending(&self, id: &str) -> ApprovalError {
        let finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        match finished.iter().rev().find(|(known, _)| known == id) {
            Some((_, "expired")) => ApprovalError::Expired(id.to_owned()),
            Some((_, how)) => ApprovalError::Answered { id: id.to_owned(), how },
            None => ApprovalError::Unknown(id.to_owned()),
        }
    }

    fn finish(&self, id: &str, how: &'static str) {
        let mut finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        if finished.len() == REMEMBERED {
            finished.pop_front();
        }
        finished.push_back((id.to_owned(), how));
    }

    /// Answers a waiting request. `digest`, when given, must be the
    /// request's: the approver approves what they reviewed. Nothing changes
    /// when the answer is refused. Returns the request answered.
    pub fn answer(
        &self,
        id: &str,
        digest: Option<&str>,
        approver: &str,
        channel: &str,
        approve: bool,
        reason: Option<String>,
    ) -> Result<ApprovalRequest, ApprovalError> {
        let allow_self = self.settings().allow_self_approval;
        let mut pending = self.lock_pending();
        let Some(waiting) = pending.get(id) else {
            drop(pending);
            return Err(self.not_pending(id));
        };
        if let Some(given) = digest
            && !given.eq_ignore_ascii_case(&waiting.request.digest)
        {
            return Err(ApprovalError::DigestMismatch {
                id: id.to_owned(),
                actual: waiting.request.digest.clone(),
                given: given.to_owned(),
            });
        }
        if !allow_self && approver == waiting.request.principal {
            return Err(ApprovalError::SelfApproval { id: id.to_owned(), approver: approver.to_owned() });
        }
        let waiting = pending.remove(id).expect("found above");
        drop(pending);
        let (approver, channel) = (approver.to_owned(), channel.to_owned());
        let outcome = if approve {
            self.finish(id, "approved");
            ApprovalOutcome::Approved { approver, channel }
        } else {
            self.finish(id, "denied");
            ApprovalOutcome::Denied { approver, channel, reason }
        };
        // The call may have stopped waiting (its deadline); the answer is then moot.
        let _ = waiting.answer.send(outcome);
        Ok(waiting.request)
    }

    /// The expiry of a request raised now: its `expire`, or a moment
    /// before the call's deadline, so the denial reaches the tool before
    /// the call's timeout cuts it.
    pub(crate) fn expiry(&self, deadline: Instant) -> (Instant, SystemTime) {
        const MARGIN: Duration = Duration::from_millis(250);
        let expire = self.settings().expire.0;
        let until = (Instant::now() + expire).min(deadline.checked_sub(MARGIN).unwrap_or(deadline));
        (until, SystemTime::now() + until.saturating_duration_since(Instant::now()))
    }

    /// Raises a request and waits for its answer, its expiry or the call's
    /// deadline, whichever comes first.
    pub(crate) async fn ask(self: &Arc<Self>, asking: Asking) -> ApprovalOutcome {
        let Asking { request, until, channel } = asking;
        let id = request.id.clone();
        let (sender, receiver) = oneshot::channel();
        self.lock_pending().insert(id.clone(), Pending { request: request.clone(), answer: sender });
        let _ = self.raised.send(request.clone());
        // A per-call channel answers through the same door as the admin
        // interface: single use, the same checks, the first answer wins.
        let settings = self.settings();
        let asked = channel.filter(|_| settings.elicitation && settings.allow_self_approval).map(|channel| {
            let approvals = self.clone();
            let id = id.clone();
            tokio::spawn(async move {
                if let Some(answer) = channel.ask(request).await
                    && let Err(error) =
                        approvals.answer(&id, None, &answer.approver, &answer.channel, answer.approve, answer.reason)
                {
                    tracing::info!(target: "toolcell::approval", "{}: {error}", answer.channel);
                }
            })
        });
        let outcome = match tokio::time::timeout_at(until.into(), receiver).await {
            Ok(Ok(outcome)) => outcome,
            _ => {
                // Taken out under the lock: an answer that comes now finds nothing to answer.
                if self.lock_pending().remove(&id).is_some() {
                    self.finish(&id, "expired");
                }
                ApprovalOutcome::Expired
            }
        };
        if let Some(asked) = asked {
            asked.abort();
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str) -> ApprovalRequest {
        ApprovalRequest {
            id: id.into(),
            digest: "ab".repeat(32),
            principal: "alice".into(),
            tool: "github-issues".into(),
            task: "t".into(),
            workload: "w".into(),
            invocation: "i".into(),
            action: "http",
            what: "POST https://api.github.com:443/repos/a/issues".into(),
            why: "visible to customers".into(),
            policies: vec!["approve-new-issues".into()],
            reach: GrantSummary::default(),
            raised_at: "2026-12-01T10:00:00Z".into(),
            expires_at: "2026-12-01T10:05:00Z".into(),
        }
    }

    async fn raised(
        approvals: &Arc<Approvals>,
        id: &str,
        within: Duration,
    ) -> tokio::task::JoinHandle<ApprovalOutcome> {
        let approvals2 = approvals.clone();
        let (until, _) = approvals.expiry(Instant::now() + within);
        let asking = Asking { request: request(id), until, channel: None };
        let waiting = tokio::spawn(async move { approvals2.ask(asking).await });
        while approvals.show(id).is_err() {
            tokio::task::yield_now().await;
        }
        waiting
    }

    #[tokio::test]
    async fn an_answer_is_checked_used_once_and_remembered() {
        let approvals = Arc::new(Approvals::new(ApprovalSettings::default()));
        let waiting = raised(&approvals, "a1", Duration::from_secs(30)).await;
        assert_eq!(approvals.list().len(), 1);
        // The wrong digest, and the principal itself, change nothing.
        let error = approvals.answer("a1", Some("00"), "bob", "admin", true, None).unwrap_err();
        assert!(matches!(error, ApprovalError::DigestMismatch { .. }), "{error}");
        let error = approvals.answer("a1", None, "alice", "admin", true, None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`alice` cannot answer approval request `a1`: it acts for them (self-approval is off)"
        );
        assert!(approvals.show("a1").is_ok());
        approvals.answer("a1", Some(&"AB".repeat(32)), "bob", "admin", true, None).unwrap();
        assert_eq!(
            waiting.await.unwrap(),
            ApprovalOutcome::Approved { approver: "bob".into(), channel: "admin".into() }
        );
        let replay = approvals.answer("a1", None, "bob", "admin", true, None).unwrap_err();
        assert_eq!(replay.to_string(), "approval request `a1` was already approved; an approval is used once");
        assert_eq!(
            approvals.answer("nope", None, "bob", "admin", true, None).unwrap_err(),
            ApprovalError::Unknown("nope".into())
        );
        assert!(approvals.list().is_empty());
    }

    #[tokio::test]
    async fn no_answer_in_time_is_a_denial_and_a_late_answer_is_refused() {
        let approvals = Arc::new(Approvals::new(ApprovalSettings::default()));
        // The request ends a moment (250ms) before the call's deadline.
        let waiting = raised(&approvals, "a2", Duration::from_millis(400)).await;
        assert_eq!(waiting.await.unwrap(), ApprovalOutcome::Expired);
        let late = approvals.answer("a2", None, "bob", "admin", true, None).unwrap_err();
        assert_eq!(late, ApprovalError::Expired("a2".into()));
        // Self-approval, where the operator allows it.
        approvals.set_settings(ApprovalSettings { allow_self_approval: true, ..ApprovalSettings::default() });
        let waiting = raised(&approvals, "a3", Duration::from_secs(30)).await;
        approvals.answer("a3", None, "alice", "admin", false, Some("not today".into())).unwrap();
        assert_eq!(
            waiting.await.unwrap(),
            ApprovalOutcome::Denied {
                approver: "alice".into(),
                channel: "admin".into(),
                reason: Some("not today".into())
            }
        );
    }
}
