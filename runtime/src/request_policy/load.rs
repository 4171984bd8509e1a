//! Reading `.cedar` files: every policy parsed, given its id, checked
//! against the generated schema, and sorted by the action it can apply to.
//! A set with any problem is refused whole (nothing partially applied), and
//! each problem names its file, line and column.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{ActionConstraint, Effect, PolicyId, PolicySet, ValidationMode, Validator};
use miette::Diagnostic;

use crate::request_policy::native::NativeSlice;
use crate::request_policy::query::Reads;
use crate::request_policy::schema::{ACTIONS, schema};

/// One policy file's name and text.
#[derive(Clone, Debug)]
pub struct PolicySource {
    /// Where it was read from (or a name for text given in code).
    pub file: PathBuf,
    /// Its Cedar text.
    pub text: String,
}

impl PolicySource {
    /// Every `*.cedar` file directly in `dir`, in name order. A directory
    /// without any is an empty set.
    pub fn read_dir(dir: &Path) -> Result<Vec<PolicySource>, PolicyErrors> {
        let unreadable = |file: &Path, error: std::io::Error| PolicyErrors {
            problems: vec![PolicyProblem {
                file: file.to_owned(),
                line: 0,
                column: 0,
                message: format!("cannot be read: {error}"),
            }],
        };
        // Ambient authority: the operator's policy directory.
        let entries = std::fs::read_dir(dir).map_err(|error| unreadable(dir, error))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "cedar") && path.is_file())
            .collect();
        files.sort();
        files.into_iter().map(|file| PolicySource::read(&file).map_err(|error| unreadable(&file, error))).collect()
    }

    /// One file.
    pub fn read(file: &Path) -> std::io::Result<PolicySource> {
        // Ambient authority: an operator's policy file.
        Ok(PolicySource { file: file.to_owned(), text: std::fs::read_to_string(file)? })
    }
}

/// One thing wrong in a policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyProblem {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is the whole file.
    pub line: usize,
    /// 1-based; 0 when the problem is the whole file.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
        }
    }
}

/// A policy set that was refused, with every problem found.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}", self.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct PolicyErrors {
    pub problems: Vec<PolicyProblem>,
}

/// The id of the implicit permit that stands for the manifest in `ceiling` mode.
pub const MANIFEST_POLICY: &str = "manifest";

/// What the runtime reads from one policy's annotations.
#[derive(Clone, Debug, Default)]
pub(crate) struct PolicyNotes {
    /// `@reason("...")`: shown with a denial.
    pub(crate) reason: Option<String>,
    /// `@approval("...")` on a permit: what it allows waits for a person.
    pub(crate) approval: Option<String>,
    /// `forbid` or `permit`.
    pub(crate) forbid: bool,
}

/// Policies sorted by what they can apply to, so a decision evaluates only
/// those: `by_action[i]` holds the policies that can apply to `ACTIONS[i]`
/// on any tool, and `by_tool[i][tool]` those plus the ones scoped to that
/// tool (`resource in Tool::"x"`, `resource == Tool::"x"`).
pub(crate) struct Loaded {
    pub(crate) by_action: Vec<Slice>,
    pub(crate) by_tool: Vec<HashMap<String, Slice>>,
    pub(crate) notes: HashMap<String, PolicyNotes>,
    pub(crate) count: usize,
}

/// The policies one decision evaluates, and the attributes they read: only
/// these are built for it.
pub(crate) struct Slice {
    pub(crate) set: PolicySet,
    /// The same policies compiled to be evaluated over the runtime's facts
    /// (`native.rs`); `None` where one uses what only Cedar evaluates.
    pub(crate) native: Option<NativeSlice>,
    pub(crate) reads: Reads,
    /// It holds a policy of the operator's (not only the manifest's permit).
    pub(crate) decides: bool,
    /// Its decisions need the call's input digest: a policy reads it, or may
    /// ask a person, who is shown it.
    pub(crate) needs_input: bool,
}

impl Slice {
    /// The slice of `set`'s policies for decisions of `action`.
    fn of(set: PolicySet, action: &str) -> Slice {
        let reads = Reads::of(set.policies());
        let native = NativeSlice::compile(set.policies(), action, reads.reads_into("resource"));
        let decides = set.policies().any(|policy| policy.id().to_string() != MANIFEST_POLICY);
        let needs_input =
            reads.reads_into("context.input") || set.policies().any(|policy| policy.annotation("approval").is_some());
        Slice { set, native, reads, decides, needs_input }
    }
}

/// Parses, names, validates and sorts `sources`.
pub(crate) fn load(sources: &[PolicySource], implicit_permit: bool) -> Result<Loaded, PolicyErrors> {
    let mut problems = Vec::new();
    let mut by_action: Vec<PolicySet> = ACTIONS.iter().map(|_| PolicySet::new()).collect();
    // Per action: each tool's own policies, joined with the any-tool ones below.
    let mut scoped: Vec<HashMap<String, Vec<cedar_policy::Policy>>> = ACTIONS.iter().map(|_| HashMap::new()).collect();
    let mut notes = HashMap::new();
    let mut defined: HashMap<String, PathBuf> = HashMap::new();
    let mut count = 0;
    // Built only for policies to check: with none written (the default), a
    // start does not pay for Cedar's schema.
    let validator = std::cell::LazyCell::new(|| Validator::new(schema().clone()));
    for source in sources {
        let at = |offset: Option<usize>, message: String| {
            let (line, column) = offset.map_or((0, 0), |offset| line_column(&source.text, offset));
            PolicyProblem { file: source.file.clone(), line, column, message }
        };
        let set = match PolicySet::from_str(&source.text) {
            Ok(set) => set,
            Err(errors) => {
                for error in errors.iter() {
                    problems.push(at(first_offset(error), described(error)));
                }
                continue;
            }
        };
        if let Some(template) = set.templates().next() {
            problems.push(at(
                None,
                format!("policy {}: templates (`?principal`, `?resource`) are not used by toolcell", template.id()),
            ));
            continue;
        }
        let stem = source.file.file_stem().map_or_else(|| "policy".into(), |s| s.to_string_lossy().into_owned());
        // Cedar numbers a file's policies policy0, policy1, … in file order;
        // each gets its `@id`, or `<file stem>.<n>`, before anything names it.
        let mut policies: Vec<_> = set.policies().collect();
        policies.sort_by_key(|p| p.id().to_string().trim_start_matches("policy").parse::<usize>().unwrap_or(0));
        let named: Vec<cedar_policy::Policy> = policies
            .iter()
            .enumerate()
            .map(|(index, policy)| {
                let id = policy.annotation("id").map_or_else(|| format!("{stem}.{}", index + 1), str::to_owned);
                policy.new_id(PolicyId::new(id))
            })
            .collect();
        let set = match PolicySet::from_policies(named.clone()) {
            Ok(set) => set,
            Err(error) => {
                problems.push(at(None, error.to_string()));
                continue;
            }
        };
        let validated = validator.validate(&set, ValidationMode::Strict);
        for error in validated.validation_errors() {
            problems.push(at(first_offset(error), described(error)));
        }
        if !validated.validation_passed() {
            continue;
        }
        for policy in named {
            let id = policy.id().to_string();
            let named = |message: String| at(None, format!("policy `{id}`: {message}"));
            if id == MANIFEST_POLICY {
                problems
                    .push(named(format!("the id `{MANIFEST_POLICY}` is the runtime's own (the manifest's permit)")));
                continue;
            }
            if let Some(first) = defined.insert(id.clone(), source.file.clone()) {
                problems.push(named(format!("the id is also used in {}", first.display())));
                continue;
            }
            let forbid = policy.effect() == Effect::Forbid;
            let approval = policy.annotation("approval").map(str::to_owned);
            if forbid && approval.is_some() {
                problems.push(named(
                    "@approval belongs on a `permit`: it makes what the permit allows wait for a person".into(),
                ));
                continue;
            }
            let reason = policy.annotation("reason").map(str::to_owned);
            notes.insert(id.clone(), PolicyNotes { reason, approval, forbid });
            let tool = scoped_tool(&policy.resource_constraint());
            let actions: Vec<usize> = ACTIONS
                .iter()
                .enumerate()
                .filter(|(_, (action, _, _))| applies_to(&policy.action_constraint(), action))
                .map(|(index, _)| index)
                .collect();
            // A slice holds one action on one tool (or on any): there its scope
            // always holds, so it is not evaluated again for each decision, and
            // without the tool scope the resource needs no entity unless the
            // policy reads its attributes.
            let policy = for_its_slices(&policy, tool.is_some());
            for index in actions {
                match &tool {
                    Some(tool) => scoped[index].entry(tool.clone()).or_default().push(policy.clone()),
                    None => by_action[index].add(policy.clone()).expect("ids are unique"),
                }
            }
            count += 1;
        }
    }
    if !problems.is_empty() {
        return Err(PolicyErrors { problems });
    }
    if implicit_permit {
        // `permit(principal, action, resource);`, given as JSON: Cedar reads
        // it without building its policy grammar's lexer.
        let any = serde_json::json!({ "op": "All" });
        let permit = cedar_policy::Policy::from_json(
            Some(PolicyId::new(MANIFEST_POLICY)),
            serde_json::json!({ "effect": "permit", "principal": any, "action": any, "resource": any, "conditions": [] }),
        )
        .expect("the implicit permit is a policy");
        for slot in &mut by_action {
            slot.add(permit.clone()).expect("`manifest` is reserved");
        }
        notes.insert(MANIFEST_POLICY.to_owned(), PolicyNotes::default());
    }
    let by_tool: Vec<HashMap<String, Slice>> = scoped
        .into_iter()
        .zip(&by_action)
        .zip(ACTIONS)
        .map(|((tools, any_tool), (action, _, _))| {
            tools
                .into_iter()
                .map(|(tool, own)| {
                    let mut set = any_tool.clone();
                    for policy in own {
                        set.add(policy).expect("ids are unique");
                    }
                    (tool, Slice::of(set, action))
                })
                .collect()
        })
        .collect();
    let by_action = by_action.into_iter().zip(ACTIONS).map(|(set, (action, _, _))| Slice::of(set, action)).collect();
    Ok(Loaded { by_action, by_tool, notes, count })
}

/// True when a policy's action scope can match `action`.
fn applies_to(constraint: &ActionConstraint, action: &str) -> bool {
    let named = |uid: &cedar_policy::EntityUid| uid.id().unescaped() == action;
    match constraint {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => named(uid),
        ActionConstraint::In(uids) => uids.iter().any(named),
    }
}

/// The tool a policy's resource scope confines it to: a resource `in` (or
/// `==`) `Tool::"x"` can only be the tool `x` or one of its resources.
fn scoped_tool(constraint: &cedar_policy::ResourceConstraint) -> Option<String> {
    use cedar_policy::ResourceConstraint;
    let uid = match constraint {
        ResourceConstraint::In(uid) | ResourceConstraint::Eq(uid) | ResourceConstraint::IsIn(_, uid) => uid,
        ResourceConstraint::Any | ResourceConstraint::Is(_) => return None,
    };
    (uid.type_name().basename() == "Tool" && uid.type_name().namespace().is_empty())
        .then(|| uid.id().unescaped().to_owned())
}

/// The policy as its slices evaluate it: without its action scope (each
/// slice it is put in is of an action the scope holds for) and, where it is
/// confined to one tool (`in Tool::"x"` or `== Tool::"x"`), without that.
fn for_its_slices(policy: &cedar_policy::Policy, in_its_tools_slice: bool) -> cedar_policy::Policy {
    let Ok(mut json) = policy.to_json() else { return policy.clone() };
    json["action"] = serde_json::json!({ "op": "All" });
    if in_its_tools_slice {
        let scope = &mut json["resource"];
        match scope["op"].as_str() {
            Some("is") => {
                if let Some(scope) = scope.as_object_mut() {
                    scope.remove("in");
                }
            }
            _ => *scope = serde_json::json!({ "op": "All" }),
        }
    }
    cedar_policy::Policy::from_json(Some(policy.id().clone()), json).unwrap_or_else(|_| policy.clone())
}

/// The message of a Cedar diagnostic with its help, on one line.
fn described(error: &dyn Diagnostic) -> String {
    match error.help() {
        Some(help) => format!("{error} ({help})"),
        None => error.to_string(),
    }
}

/// Where a diagnostic points, as a byte offset into its file.
fn first_offset(error: &dyn Diagnostic) -> Option<usize> {
    error.labels().and_then(|mut labels| labels.next()).map(|label| label.offset())
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |last| last.chars().count()) + 1;
    (line, column)
}
