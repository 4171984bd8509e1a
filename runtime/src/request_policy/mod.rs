//! Request-time policy: each decision the grant allows is also asked of
//! the operator's Cedar policies, when it happens, with its context (who,
//! which tool, what exactly, when, what the call and task have done so
//! far, whether a person approved it).
//!
//! The manifest stays the ceiling: policies are asked only about what the
//! grant already allows, so they can forbid it or make it wait for
//! approval, never allow more. In `ceiling` mode an implicit permit with
//! the id `manifest` stands for the manifest (with no policy written,
//! everything the grant allows is allowed, as before); in `strict` mode a
//! policy must permit each action as well.
//!
//! A policy that fails to evaluate (an attribute missing, an overflow) is
//! not skipped silently: a `forbid` that errors denies, so a mistake in a
//! guard fails closed.
//!
//! Where a decision's policies are written in the common part of Cedar,
//! they are evaluated over the runtime's facts without building a Cedar
//! request (`native.rs`); Cedar decides the rest, and is the reference
//! both are tested against.

pub(crate) mod load;
mod native;
pub(crate) mod query;
pub(crate) mod schema;

use cedar_policy::{Authorizer, Decision};

use load::{Loaded, PolicyNotes};
pub use load::{MANIFEST_POLICY, PolicyErrors, PolicyProblem, PolicySource};
pub use query::{Counters, Digest, PolicyAction, PolicyQuery, PrincipalAttributes, Reads, TaskEntities, ToolFacts};
pub use schema::schema_text;

/// How policies combine with the manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    /// The manifest is the permit; policies add forbids and approvals.
    #[default]
    Ceiling,
    /// A policy must permit each action as well as the manifest.
    Strict,
}

impl PolicyMode {
    pub fn name(self) -> &'static str {
        match self {
            PolicyMode::Ceiling => "ceiling",
            PolicyMode::Strict => "strict",
        }
    }
}

/// A loaded, validated set of request-time policies.
pub struct RequestPolicies {
    mode: PolicyMode,
    loaded: Loaded,
    files: Vec<std::path::PathBuf>,
}

impl std::fmt::Debug for RequestPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestPolicies")
            .field("mode", &self.mode)
            .field("policies", &self.loaded.count)
            .field("files", &self.files)
            .finish()
    }
}

/// A policy decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyVerdict {
    /// Allowed; the permits that allowed it.
    Allow { policies: Vec<String> },
    /// Denied; the forbids that denied it (none: no permit in `strict` mode).
    Deny { policies: Vec<String>, reason: String },
    /// Allowed once a person approves; the permits that ask for it and why.
    Approval { policies: Vec<String>, reason: String },
}

impl PolicyVerdict {
    /// `allowed`, `denied` or `approval_required`.
    pub fn name(&self) -> &'static str {
        match self {
            PolicyVerdict::Allow { .. } => "allowed",
            PolicyVerdict::Deny { .. } => "denied",
            PolicyVerdict::Approval { .. } => "approval_required",
        }
    }

    /// The ids of the policies that determined it.
    pub fn policies(&self) -> &[String] {
        match self {
            PolicyVerdict::Allow { policies }
            | PolicyVerdict::Deny { policies, .. }
            | PolicyVerdict::Approval { policies, .. } => policies,
        }
    }
}

impl RequestPolicies {
    /// No policies: in `ceiling` mode, what the grant allows is allowed.
    pub fn none() -> RequestPolicies {
        RequestPolicies::load(&[], PolicyMode::Ceiling).expect("an empty set loads")
    }

    /// Parses and validates `sources`; any problem refuses the whole set.
    pub fn load(sources: &[PolicySource], mode: PolicyMode) -> Result<RequestPolicies, PolicyErrors> {
        let loaded = load::load(sources, mode == PolicyMode::Ceiling)?;
        Ok(RequestPolicies { mode, loaded, files: sources.iter().map(|s| s.file.clone()).collect() })
    }

    /// Every policy in the `*.cedar` files of `dir`.
    pub fn load_dir(dir: &std::path::Path, mode: PolicyMode) -> Result<RequestPolicies, PolicyErrors> {
        RequestPolicies::load(&PolicySource::read_dir(dir)?, mode)
    }

    /// The mode.
    pub fn mode(&self) -> PolicyMode {
        self.mode
    }

    /// How many policies were loaded (the implicit `manifest` permit not counted).
    pub fn len(&self) -> usize {
        self.loaded.count
    }

    /// True when no policy was loaded.
    pub fn is_empty(&self) -> bool {
        self.loaded.count == 0
    }

    /// The files the policies came from.
    pub fn files(&self) -> &[std::path::PathBuf] {
        &self.files
    }

    /// True when nothing can change a decision: no policies in `ceiling`
    /// mode, so what the grant allows is allowed without asking Cedar.
    pub fn is_inert(&self) -> bool {
        self.is_empty() && self.mode == PolicyMode::Ceiling
    }

    /// The policies a decision of `action` on `tool` evaluates.
    fn slice(&self, action: &str, tool: &str) -> &load::Slice {
        let index = schema::ACTIONS.iter().position(|(name, _, _)| *name == action).expect("known action");
        self.loaded.by_tool[index].get(tool).unwrap_or(&self.loaded.by_action[index])
    }

    /// True when a policy can change a decision of `action` on `tool`: in
    /// `ceiling` mode, when a policy of the operator's applies to it. When
    /// none does, what the grant allows is allowed without asking Cedar.
    pub fn decides(&self, action: &str, tool: &str) -> bool {
        self.mode == PolicyMode::Strict || self.slice(action, tool).decides
    }

    /// True when a decision of any action on `tool` reads the call's input
    /// digest (`context.input`), or may ask a person (who is shown it).
    pub fn reads_input(&self, tool: &str) -> bool {
        !self.is_inert() && schema::ACTIONS.iter().any(|(action, _, _)| self.slice(action, tool).needs_input)
    }

    /// True when a decision of `action` on `tool` reads only what is fixed
    /// for a task's life (see `Reads::fixed_for_a_task`): a task may keep
    /// its first allow or deny for the rest of its decisions of that action.
    pub fn fixed_for_a_task(&self, action: &str, tool: &str) -> bool {
        self.slice(action, tool).reads.fixed_for_a_task(action == "call")
    }

    fn notes(&self, id: &str) -> Option<&PolicyNotes> {
        self.loaded.notes.get(id)
    }

    /// Decides one request.
    pub fn evaluate(&self, query: &PolicyQuery) -> PolicyVerdict {
        if self.is_inert() {
            return PolicyVerdict::Allow { policies: vec![MANIFEST_POLICY.to_owned()] };
        }
        // Only the policies that can apply to this action on this tool.
        let slice = self.slice(query.action.name(), &query.tool.name);
        let answered = slice.native.as_ref().and_then(|native| native.decide(query));
        let outcome = match answered {
            Some(answered) => {
                // Cedar is the reference: every test asks it too.
                #[cfg(debug_assertions)]
                assert_eq!(
                    cedar_outcome(slice, query).as_ref().map(|o| (o.allow, &o.determining, o.errors.is_empty())),
                    Ok((answered.allow, &answered.determining, true)),
                    "the native evaluation of {query:?} differs from Cedar's"
                );
                answered
            }
            None => match cedar_outcome(slice, query) {
                Ok(outcome) => outcome,
                // Fails closed: a decision Cedar cannot be asked is a denial.
                Err(error) => {
                    return PolicyVerdict::Deny {
                        policies: Vec::new(),
                        reason: format!("the policy request could not be built: {error}"),
                    };
                }
            },
        };
        let Outcome { allow, determining, errors } = outcome;
        // A forbid that could not be evaluated denies: a broken guard fails closed.
        let mut failed: Vec<(String, String)> =
            errors.iter().filter(|(id, _)| self.notes(id).is_some_and(|notes| notes.forbid)).cloned().collect();
        // An approval permit that could not be evaluated still asks for the approval.
        let unsure: Vec<&str> =
            errors.iter().filter_map(|(id, _)| self.notes(id).and_then(|notes| notes.approval.as_deref())).collect();
        if !failed.is_empty() {
            failed.sort();
            let ids: Vec<String> = failed.iter().map(|(id, _)| id.clone()).collect();
            let reason = format!("policy `{}` could not be evaluated, so it denies: {}", failed[0].0, failed[0].1);
            return PolicyVerdict::Deny { policies: ids, reason };
        }
        match allow {
            false if determining.is_empty() => PolicyVerdict::Deny {
                policies: Vec::new(),
                reason: format!(
                    "no policy permits `{}` on {} (policy mode strict)",
                    query.action.name(),
                    query.action.resource(&query.tool.name)
                ),
            },
            false => {
                // Each forbid that applies, with its `@reason` where it has one.
                let each: Vec<String> = determining
                    .iter()
                    .map(|id| match self.notes(id).and_then(|n| n.reason.as_deref()) {
                        Some(because) => format!("`{id}`: {because}"),
                        None => format!("`{id}`"),
                    })
                    .collect();
                let reason = format!("denied by policy {}", each.join("; "));
                PolicyVerdict::Deny { policies: determining, reason }
            }
            true => {
                let mut asks: Vec<&str> =
                    determining.iter().filter_map(|id| self.notes(id).and_then(|n| n.approval.as_deref())).collect();
                asks.extend(unsure);
                if asks.is_empty() || query.approved {
                    PolicyVerdict::Allow { policies: determining }
                } else {
                    let reason = asks.join("; ");
                    PolicyVerdict::Approval { policies: determining, reason }
                }
            }
        }
    }
}

/// What a slice's policies said of a decision.
struct Outcome {
    allow: bool,
    /// The satisfied permits of an allow, or forbids of a denial; sorted.
    determining: Vec<String>,
    /// The policies that could not be evaluated, with why.
    errors: Vec<(String, String)>,
}

/// The decision as Cedar makes it: the request built with the attributes
/// the slice's policies read, and evaluated.
fn cedar_outcome(slice: &load::Slice, query: &PolicyQuery) -> Result<Outcome, String> {
    let (request, entities) = query.to_cedar_reading(&slice.reads)?;
    let response = Authorizer::new().is_authorized(&request, &slice.set, &entities);
    let diagnostics = response.diagnostics();
    let mut determining: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
    determining.sort();
    let errors = diagnostics
        .errors()
        .map(|cedar_policy::AuthorizationError::PolicyEvaluationError(error)| {
            (error.policy_id().to_string(), error.inner().to_string())
        })
        .collect();
    Ok(Outcome { allow: response.decision() == Decision::Allow, determining, errors })
}

#[cfg(test)]
impl RequestPolicies {
    /// The same set, building every attribute for every decision.
    fn reading_everything(mut self) -> RequestPolicies {
        let slices =
            self.loaded.by_action.iter_mut().chain(self.loaded.by_tool.iter_mut().flat_map(|t| t.values_mut()));
        for slice in slices {
            slice.reads = Reads::everything();
            // Cedar decides each, as it would with a policy only it evaluates.
            slice.native = None;
        }
        self
    }

    /// What a decision of `action` on `tool` reads.
    fn reads_for(&self, action: &str, tool: &str) -> &Reads {
        &self.slice(action, tool).reads
    }
}

#[cfg(test)]
mod tests;
