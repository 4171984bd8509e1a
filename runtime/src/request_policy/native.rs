//! A slice's policies evaluated over the runtime's own facts, without
//! building a Cedar request.
//!
//! Building the request is most of what a Cedar decision costs: each value
//! of the context is made a restricted expression, sorted into records and
//! evaluated into a value, with allocations at every step, and each policy's
//! condition is rebuilt from its scope and body before it is interpreted. A
//! decision point that asks on every HTTP request pays that each time.
//!
//! Here the policies of a slice are compiled once, when they are loaded,
//! for the part of Cedar's language operators' policies are written in
//! (comparisons, `&&`/`||`/`!`, `if`, arithmetic, sets and their
//! `contains`, entities with `==`, `in` and `is`, attributes of the
//! principal, the resource and the context), and evaluated straight from a
//! [`PolicyQuery`]. Cedar stays the reference:
//!
//! - a slice with anything else (`like`, extension functions, record
//!   literals, tags, a whole record compared) is not compiled: Cedar decides;
//! - a decision in which any policy would fail to evaluate (a type that is
//!   not the one expected, an overflow) is not answered here: Cedar decides
//!   it, so errors, and the messages that name them, are Cedar's own;
//! - debug builds (every test) ask Cedar as well, for every decision
//!   answered here, and fail when the two differ.

use std::borrow::Cow;

use serde_json::Value as Json;

use super::Outcome;
use super::query::{PolicyAction, PolicyQuery, cedar_long, path_of, socket_address};

/// The policies of one slice, compiled.
pub(crate) struct NativeSlice {
    policies: Vec<NativePolicy>,
    /// The resource's entity is given to Cedar (a policy reads it), so it
    /// is `in` its tool; otherwise Cedar knows no parent of it.
    resource_in_tool: bool,
}

struct NativePolicy {
    id: String,
    forbid: bool,
    condition: Node,
}

/// The entity types of toolcell's schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Principal,
    Tool,
    Task,
    Endpoint,
    Credential,
    Address,
    Action,
}

impl Kind {
    fn named(name: &str) -> Option<Kind> {
        Some(match name {
            "Principal" => Kind::Principal,
            "Tool" => Kind::Tool,
            "Task" => Kind::Task,
            "Endpoint" => Kind::Endpoint,
            "Credential" => Kind::Credential,
            "Address" => Kind::Address,
            "Action" => Kind::Action,
            _ => return None,
        })
    }
}

/// A value during evaluation, borrowing from the query or the policy.
#[derive(Clone, Debug)]
enum Val<'a> {
    Bool(bool),
    Long(i64),
    Str(Cow<'a, str>),
    /// A set of strings the query holds (roles, tags, scopes).
    Strs(&'a [String]),
    Set(Vec<Val<'a>>),
    Entity(Kind, Cow<'a, str>),
}

impl<'a> Val<'a> {
    /// Its elements, where it is a set.
    fn elements(&self) -> Option<Vec<Val<'a>>> {
        match self {
            Val::Strs(items) => Some(items.iter().map(|s| Val::Str(Cow::Borrowed(s.as_str()))).collect()),
            Val::Set(items) => Some(items.clone()),
            _ => None,
        }
    }
}

/// Equality as Cedar's `==`, for values of one type; `None` for values of
/// different types (Cedar says `false`; this path leaves them to Cedar).
fn same(a: &Val<'_>, b: &Val<'_>) -> Option<bool> {
    match (a, b) {
        (Val::Bool(a), Val::Bool(b)) => Some(a == b),
        (Val::Long(a), Val::Long(b)) => Some(a == b),
        (Val::Str(a), Val::Str(b)) => Some(a == b),
        (Val::Entity(ka, a), Val::Entity(kb, b)) => Some(ka == kb && a == b),
        (Val::Strs(_) | Val::Set(_), Val::Strs(_) | Val::Set(_)) => {
            let (a, b) = (a.elements()?, b.elements()?);
            Some(holds_all(&a, &b)? && holds_all(&b, &a)?)
        }
        _ => None,
    }
}

/// `set.contains(item)`: for a set of the query's strings, without
/// building its elements (the common `principal.roles.contains("x")`).
fn contains(set: &Val<'_>, item: &Val<'_>) -> Option<bool> {
    match (set, item) {
        (Val::Strs(items), Val::Str(wanted)) => Some(items.iter().any(|s| s.as_str() == wanted.as_ref())),
        _ => holds(&set.elements()?, item),
    }
}

fn holds(set: &[Val<'_>], item: &Val<'_>) -> Option<bool> {
    for element in set {
        if same(element, item)? {
            return Some(true);
        }
    }
    Some(false)
}

fn holds_all(set: &[Val<'_>], items: &[Val<'_>]) -> Option<bool> {
    for item in items {
        if !holds(set, item)? {
            return Some(false);
        }
    }
    Some(true)
}

/// Reads one attribute (or variable) of a query; `None` where the query's
/// action has no such thing.
type Getter = for<'q> fn(&'q PolicyQuery) -> Option<Val<'q>>;

#[derive(Clone, Copy, Debug)]
enum Compare {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug)]
enum Arith {
    Add,
    Sub,
    Mul,
}

#[derive(Clone, Copy, Debug)]
enum SetTest {
    Contains,
    ContainsAll,
    ContainsAny,
}

/// A compiled expression.
enum Node {
    Bool(bool),
    Long(i64),
    Str(String),
    Entity(Kind, String),
    Get(Getter),
    Set(Vec<Node>),
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    If(Box<Node>, Box<Node>, Box<Node>),
    Compare(Compare, Box<Node>, Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    SetTest(SetTest, Box<Node>, Box<Node>),
    IsEmpty(Box<Node>),
    In(Box<Node>, Box<Node>),
    Is(Box<Node>, Kind),
}

impl NativeSlice {
    /// `policies` of a slice of `action`, compiled; `None` when one uses
    /// something this path leaves to Cedar. `resource_in_tool`: whether a
    /// decision gives Cedar the resource's entity (a policy reads it).
    pub(crate) fn compile<'p>(
        policies: impl IntoIterator<Item = &'p cedar_policy::Policy>,
        action: &str,
        resource_in_tool: bool,
    ) -> Option<NativeSlice> {
        let compiler = Compiler { action };
        let policies = policies
            .into_iter()
            .map(|policy| {
                let json = policy.to_json().ok()?;
                Some(NativePolicy {
                    id: policy.id().to_string(),
                    forbid: policy.effect() == cedar_policy::Effect::Forbid,
                    condition: compiler.policy(&json)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(NativeSlice { policies, resource_in_tool })
    }

    /// Decides `query` as Cedar would (no policy errs here), or `None`
    /// when a policy would fail to evaluate (Cedar decides it then, and
    /// names the error).
    pub(super) fn decide(&self, query: &PolicyQuery) -> Option<Outcome> {
        let mut permits = Vec::new();
        let mut forbids = Vec::new();
        for policy in &self.policies {
            let Val::Bool(satisfied) = self.eval(&policy.condition, query)? else { return None };
            if satisfied {
                if policy.forbid { &mut forbids } else { &mut permits }.push(policy.id.clone());
            }
        }
        let (allow, mut determining) = match (forbids.is_empty(), permits.is_empty()) {
            (false, _) => (false, forbids),
            (true, false) => (true, permits),
            (true, true) => (false, Vec::new()),
        };
        determining.sort();
        Some(Outcome { allow, determining, errors: Vec::new() })
    }

    fn eval<'a>(&self, node: &'a Node, query: &'a PolicyQuery) -> Option<Val<'a>> {
        let boolean = |node: &'a Node| match self.eval(node, query)? {
            Val::Bool(b) => Some(b),
            _ => None,
        };
        let long = |node: &'a Node| match self.eval(node, query)? {
            Val::Long(n) => Some(n),
            _ => None,
        };
        Some(match node {
            Node::Bool(b) => Val::Bool(*b),
            Node::Long(n) => Val::Long(*n),
            Node::Str(s) => Val::Str(Cow::Borrowed(s)),
            Node::Entity(kind, id) => Val::Entity(*kind, Cow::Borrowed(id)),
            Node::Get(get) => get(query)?,
            Node::Set(items) => Val::Set(items.iter().map(|item| self.eval(item, query)).collect::<Option<_>>()?),
            Node::Not(arg) => Val::Bool(!boolean(arg)?),
            Node::Neg(arg) => Val::Long(long(arg)?.checked_neg()?),
            // Short-circuiting as Cedar's: the right side is not evaluated
            // (and cannot fail) when the left decides.
            Node::And(left, right) => Val::Bool(boolean(left)? && boolean(right)?),
            Node::Or(left, right) => Val::Bool(boolean(left)? || boolean(right)?),
            Node::If(test, then, otherwise) => {
                if boolean(test)? {
                    self.eval(then, query)?
                } else {
                    self.eval(otherwise, query)?
                }
            }
            Node::Compare(op, left, right) => Val::Bool(match op {
                Compare::Eq => same(&self.eval(left, query)?, &self.eval(right, query)?)?,
                Compare::Ne => !same(&self.eval(left, query)?, &self.eval(right, query)?)?,
                Compare::Lt => long(left)? < long(right)?,
                Compare::Le => long(left)? <= long(right)?,
                Compare::Gt => long(left)? > long(right)?,
                Compare::Ge => long(left)? >= long(right)?,
            }),
            Node::Arith(op, left, right) => {
                let (a, b) = (long(left)?, long(right)?);
                Val::Long(match op {
                    Arith::Add => a.checked_add(b)?,
                    Arith::Sub => a.checked_sub(b)?,
                    Arith::Mul => a.checked_mul(b)?,
                })
            }
            Node::SetTest(test, left, right) => {
                let (set, item) = (self.eval(left, query)?, self.eval(right, query)?);
                Val::Bool(match test {
                    SetTest::Contains => contains(&set, &item)?,
                    SetTest::ContainsAll => holds_all(&set.elements()?, &item.elements()?)?,
                    SetTest::ContainsAny => {
                        let set = set.elements()?;
                        let mut any = false;
                        for item in item.elements()? {
                            if holds(&set, &item)? {
                                any = true;
                                break;
                            }
                        }
                        any
                    }
                })
            }
            Node::IsEmpty(arg) => Val::Bool(self.eval(arg, query)?.elements()?.is_empty()),
            Node::In(left, right) => {
                let Val::Entity(kind, id) = self.eval(left, query)? else { return None };
                let right = self.eval(right, query)?;
                let targets = match right {
                    Val::Set(items) => items,
                    entity @ Val::Entity(..) => vec![entity],
                    _ => return None,
                };
                let mut found = false;
                for target in &targets {
                    let Val::Entity(target_kind, target_id) = target else { return None };
                    if self.within(query, kind, &id, *target_kind, target_id) {
                        found = true;
                        break;
                    }
                }
                Val::Bool(found)
            }
            Node::Is(arg, kind) => match self.eval(arg, query)? {
                Val::Entity(actual, _) => Val::Bool(actual == *kind),
                _ => return None,
            },
        })
    }

    /// Cedar's `in` for entities: the same entity, or one of its
    /// ancestors in the entities a decision gives Cedar. The only entity
    /// with a parent is the resource of an `http`, `credential` or
    /// `socket` decision, `in` the tool, and only where it is given.
    fn within(&self, query: &PolicyQuery, kind: Kind, id: &str, target_kind: Kind, target_id: &str) -> bool {
        if kind == target_kind && id == target_id {
            return true;
        }
        // A tool (the resource of a `call`) has no parent.
        self.resource_in_tool
            && kind != Kind::Tool
            && target_kind == Kind::Tool
            && target_id == query.tool.name
            && resource(query).is_some_and(|r| matches!(&r, Val::Entity(k, i) if *k == kind && i == id))
    }
}

/// The resource of a query, as an entity.
fn resource(query: &PolicyQuery) -> Option<Val<'_>> {
    Some(match &query.action {
        PolicyAction::Call => Val::Entity(Kind::Tool, Cow::Borrowed(&query.tool.name)),
        PolicyAction::Http { .. } => Val::Entity(Kind::Endpoint, Cow::Owned(query.action.url())),
        PolicyAction::Credential { name, .. } => Val::Entity(Kind::Credential, Cow::Borrowed(name)),
        PolicyAction::Socket { ip, port, .. } => Val::Entity(Kind::Address, Cow::Owned(socket_address(*ip, *port))),
    })
}

/// Compiles EST (Cedar's JSON form of a policy) for one action.
struct Compiler<'c> {
    action: &'c str,
}

impl Compiler<'_> {
    /// The condition Cedar evaluates: principal scope, action scope,
    /// resource scope, then each `when` and `unless`, in that order.
    fn policy(&self, json: &Json) -> Option<Node> {
        let mut parts = vec![
            self.scope(&json["principal"], "principal")?,
            self.action_scope(&json["action"])?,
            self.scope(&json["resource"], "resource")?,
        ];
        for condition in json["conditions"].as_array()? {
            let body = self.expr(&condition["body"])?;
            parts.push(match condition["kind"].as_str()? {
                "when" => body,
                "unless" => Node::Not(Box::new(body)),
                _ => return None,
            });
        }
        let mut parts = parts.into_iter().rev();
        let last = parts.next()?;
        Some(parts.fold(last, |right, left| Node::And(Box::new(left), Box::new(right))))
    }

    /// A principal or resource scope: `==`, `in`, `is` and `is ... in`.
    fn scope(&self, scope: &Json, var: &str) -> Option<Node> {
        let variable = || self.variable(var).map(Box::new);
        let entity = |json: &Json| entity(json).map(|(kind, id)| Box::new(Node::Entity(kind, id)));
        Some(match scope["op"].as_str()? {
            "All" | "all" => Node::Bool(true),
            "==" => Node::Compare(Compare::Eq, variable()?, entity(&scope["entity"])?),
            "in" => Node::In(variable()?, entity(&scope["entity"])?),
            "is" => {
                let is = Node::Is(variable()?, Kind::named(scope["entity_type"].as_str()?)?);
                match scope.get("in") {
                    None => is,
                    Some(inside) => {
                        Node::And(Box::new(is), Box::new(Node::In(variable()?, entity(&inside["entity"])?)))
                    }
                }
            }
            _ => return None,
        })
    }

    fn action_scope(&self, scope: &Json) -> Option<Node> {
        let var = || self.variable("action");
        Some(match scope["op"].as_str()? {
            "All" | "all" => Node::Bool(true),
            "==" => {
                let (kind, id) = entity(&scope["entity"])?;
                Node::Compare(Compare::Eq, Box::new(var()?), Box::new(Node::Entity(kind, id)))
            }
            "in" => {
                let entities = match (scope.get("entities"), scope.get("entity")) {
                    (Some(Json::Array(list)), _) => list.iter().map(entity).collect::<Option<Vec<_>>>()?,
                    (_, Some(one)) => vec![entity(one)?],
                    _ => return None,
                };
                let set = entities.into_iter().map(|(kind, id)| Node::Entity(kind, id)).collect();
                Node::In(Box::new(var()?), Box::new(Node::Set(set)))
            }
            _ => return None,
        })
    }

    fn variable(&self, name: &str) -> Option<Node> {
        Some(Node::Get(match name {
            "principal" => |q: &PolicyQuery| Some(Val::Entity(Kind::Principal, Cow::Borrowed(q.principal.as_str()))),
            "resource" => resource,
            "action" => |q: &PolicyQuery| Some(Val::Entity(Kind::Action, Cow::Borrowed(q.action.name()))),
            // The context whole (a record): left to Cedar.
            _ => return None,
        }))
    }

    fn expr(&self, json: &Json) -> Option<Node> {
        let map = json.as_object()?;
        if map.len() != 1 {
            return None;
        }
        let (op, arg) = map.iter().next()?;
        let unary = |arg: &Json| self.expr(&arg["arg"]).map(Box::new);
        let binary = |arg: &Json| Some((Box::new(self.expr(&arg["left"])?), Box::new(self.expr(&arg["right"])?)));
        Some(match op.as_str() {
            "Value" => literal(arg)?,
            "Var" => self.variable(arg.as_str()?)?,
            "Set" => Node::Set(arg.as_array()?.iter().map(|item| self.expr(item)).collect::<Option<_>>()?),
            "!" => Node::Not(unary(arg)?),
            "neg" => Node::Neg(unary(arg)?),
            "isEmpty" => Node::IsEmpty(unary(arg)?),
            "&&" => binary(arg).map(|(l, r)| Node::And(l, r))?,
            "||" => binary(arg).map(|(l, r)| Node::Or(l, r))?,
            "==" => binary(arg).map(|(l, r)| Node::Compare(Compare::Eq, l, r))?,
            "!=" => binary(arg).map(|(l, r)| Node::Compare(Compare::Ne, l, r))?,
            "<" => binary(arg).map(|(l, r)| Node::Compare(Compare::Lt, l, r))?,
            "<=" => binary(arg).map(|(l, r)| Node::Compare(Compare::Le, l, r))?,
            ">" => binary(arg).map(|(l, r)| Node::Compare(Compare::Gt, l, r))?,
            ">=" => binary(arg).map(|(l, r)| Node::Compare(Compare::Ge, l, r))?,
            "+" => binary(arg).map(|(l, r)| Node::Arith(Arith::Add, l, r))?,
            "-" => binary(arg).map(|(l, r)| Node::Arith(Arith::Sub, l, r))?,
            "*" => binary(arg).map(|(l, r)| Node::Arith(Arith::Mul, l, r))?,
            "contains" => binary(arg).map(|(l, r)| Node::SetTest(SetTest::Contains, l, r))?,
            "containsAll" => binary(arg).map(|(l, r)| Node::SetTest(SetTest::ContainsAll, l, r))?,
            "containsAny" => binary(arg).map(|(l, r)| Node::SetTest(SetTest::ContainsAny, l, r))?,
            "in" => binary(arg).map(|(l, r)| Node::In(l, r))?,
            "is" => {
                let kind = Kind::named(arg["entity_type"].as_str()?)?;
                let left = Box::new(self.expr(&arg["left"])?);
                match arg.get("in") {
                    None => Node::Is(left, kind),
                    // `e is K in x` evaluates `e` twice here; it reads, never changes.
                    Some(inside) => Node::And(
                        Box::new(Node::Is(Box::new(self.expr(&arg["left"])?), kind)),
                        Box::new(Node::In(left, Box::new(self.expr(inside)?))),
                    ),
                }
            }
            "if-then-else" => Node::If(
                Box::new(self.expr(&arg["if"])?),
                Box::new(self.expr(&arg["then"])?),
                Box::new(self.expr(&arg["else"])?),
            ),
            "." => Node::Get(self.attribute(&arg["left"], arg["attr"].as_str()?)?),
            // Every attribute of toolcell's schema is required, and a
            // decision gives Cedar every one its policies read: `has` of an
            // attribute this path knows is true.
            "has" => {
                let path = match &arg["attr"] {
                    Json::String(attr) => vec![attr.as_str()],
                    Json::Array(attrs) => attrs.iter().map(Json::as_str).collect::<Option<Vec<_>>>()?,
                    _ => return None,
                };
                let mut left = path_of(&arg["left"])?;
                left.extend(path);
                getter(self.action, &left.join("."))?;
                Node::Bool(true)
            }
            // `like`, tags, record literals, extension functions: Cedar's.
            _ => return None,
        })
    }

    /// `left.attr`, where `left` is a variable or a chain of attributes of one.
    fn attribute(&self, left: &Json, attr: &str) -> Option<Getter> {
        let mut path = path_of(left)?;
        path.push(attr);
        getter(self.action, &path.join("."))
    }
}

/// A literal: a boolean, a long, a string or an entity.
fn literal(json: &Json) -> Option<Node> {
    Some(match json {
        Json::Bool(b) => Node::Bool(*b),
        Json::Number(n) => Node::Long(n.as_i64()?),
        Json::String(s) => Node::Str(s.clone()),
        Json::Object(map) if map.contains_key("__entity") => {
            let (kind, id) = entity(&map["__entity"])?;
            Node::Entity(kind, id)
        }
        _ => return None,
    })
}

/// An entity reference, `{"type": "Tool", "id": "x"}` (or wrapped in `__entity`).
fn entity(json: &Json) -> Option<(Kind, String)> {
    let json = json.get("__entity").unwrap_or(json);
    Some((Kind::named(json["type"].as_str()?)?, json["id"].as_str()?.to_owned()))
}

fn long(value: u64) -> Option<Val<'static>> {
    Some(Val::Long(cedar_long(value)))
}

fn text(value: &str) -> Option<Val<'_>> {
    Some(Val::Str(Cow::Borrowed(value)))
}

/// A getter of one field of the query's action (`None` for another action).
macro_rules! of_action {
    ($variant:ident { $field:ident } => $value:expr) => {
        Some(|q| match &q.action {
            PolicyAction::$variant { $field, .. } => $value,
            _ => None,
        })
    };
}

/// The attribute at the dotted `path` (from a variable) in a decision of
/// `action`, as the query builder gives it to Cedar (`query.rs`); `None`
/// for what this path does not read (a record whole, an unknown name).
fn getter(action: &str, path: &str) -> Option<Getter> {
    let common: Option<Getter> = match path {
        "principal.name" => Some(|q| text(&q.principal)),
        "principal.roles" => Some(|q| Some(Val::Strs(&q.principal_attributes.roles))),
        "principal.groups" => Some(|q| Some(Val::Strs(&q.principal_attributes.groups))),
        "principal.scopes" => Some(|q| Some(Val::Strs(&q.principal_attributes.scopes))),
        "context.time.unix" => Some(|q| Some(Val::Long(q.time.unix_timestamp()))),
        "context.time.hour" => Some(|q| long(u64::from(q.time.to_offset(time::UtcOffset::UTC).hour()))),
        "context.time.minute" => Some(|q| long(u64::from(q.time.to_offset(time::UtcOffset::UTC).minute()))),
        "context.time.weekday" => {
            Some(|q| long(u64::from(q.time.to_offset(time::UtcOffset::UTC).weekday().number_from_monday())))
        }
        "context.task" => Some(|q| Some(Val::Entity(Kind::Task, Cow::Borrowed(q.task.as_str())))),
        "context.task.id" => Some(|q| text(&q.task)),
        "context.task.workload" => Some(|q| text(&q.workload)),
        "context.task_age_seconds" => Some(|q| long(q.task_age_seconds)),
        "context.invocation.requests" => Some(|q| long(q.invocation.requests)),
        "context.invocation.bytes_sent" => Some(|q| long(q.invocation.bytes_sent)),
        "context.invocation.bytes_received" => Some(|q| long(q.invocation.bytes_received)),
        "context.invocation.mints" => Some(|q| long(q.invocation.mints)),
        "context.invocation.denials" => Some(|q| long(q.invocation.denials)),
        "context.task_total.requests" => Some(|q| long(q.task_total.requests)),
        "context.task_total.bytes_sent" => Some(|q| long(q.task_total.bytes_sent)),
        "context.task_total.bytes_received" => Some(|q| long(q.task_total.bytes_received)),
        "context.task_total.mints" => Some(|q| long(q.task_total.mints)),
        "context.task_total.denials" => Some(|q| long(q.task_total.denials)),
        "context.input.size" => Some(|q| long(q.input.size)),
        "context.input.sha256" => Some(|q| text(&q.input.sha256)),
        "context.approved" => Some(|q| Some(Val::Bool(q.approved))),
        _ => None,
    };
    if common.is_some() {
        return common;
    }
    match (action, path) {
        ("call", "resource.name") => Some(|q| text(&q.tool.name)),
        ("call", "resource.owner") => Some(|q| text(&q.tool.owner)),
        ("call", "resource.tags") => Some(|q| Some(Val::Strs(&q.tool.tags))),
        ("http", "resource.url") => Some(|q| Some(Val::Str(Cow::Owned(q.action.url())))),
        ("http", "resource.scheme" | "context.request.scheme") => of_action!(Http { scheme } => text(scheme)),
        ("http", "resource.host" | "context.request.host") => of_action!(Http { host } => text(host)),
        ("http", "resource.port" | "context.request.port") => of_action!(Http { port } => long(u64::from(*port))),
        ("http", "resource.path" | "context.request.path") => of_action!(Http { path } => text(path)),
        ("http", "context.request.method") => of_action!(Http { method } => text(method)),
        ("http", "context.request.query.size") => of_action!(Http { query } => long(query.size)),
        ("http", "context.request.query.sha256") => of_action!(Http { query } => text(&query.sha256)),
        ("http", "context.request.body.size") => of_action!(Http { body } => long(body.size)),
        ("http", "context.request.body.sha256") => of_action!(Http { body } => text(&body.sha256)),
        ("credential", "resource.name" | "context.credential.name") => of_action!(Credential { name } => text(name)),
        ("credential", "resource.provider" | "context.credential.provider") => {
            of_action!(Credential { provider } => text(provider))
        }
        ("credential", "resource.audience" | "context.credential.audience") => {
            of_action!(Credential { audience } => text(audience))
        }
        ("credential", "context.credential.scopes") => of_action!(Credential { scopes } => Some(Val::Strs(scopes))),
        ("credential", "context.credential.lifetime_seconds") => {
            of_action!(Credential { lifetime_seconds } => long(*lifetime_seconds))
        }
        ("credential", "context.credential.exposure") => of_action!(Credential { exposure } => text(exposure)),
        ("socket", "resource.ip" | "context.socket.ip") => {
            of_action!(Socket { ip } => Some(Val::Str(Cow::Owned(ip.to_string()))))
        }
        ("socket", "resource.port" | "context.socket.port") => of_action!(Socket { port } => long(u64::from(*port))),
        ("socket", "resource.protocol" | "context.socket.protocol") => {
            of_action!(Socket { protocol } => text(protocol))
        }
        ("socket", "context.socket.operation") => of_action!(Socket { operation } => text(operation)),
        _ => None,
    }
}
