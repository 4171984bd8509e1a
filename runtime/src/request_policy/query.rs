//! One Cedar request, as the runtime builds it for a decision: the
//! principal, the tool and the task as entities, the action, its resource
//! (an entity `in` the tool), and the context.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::OnceLock;

use cedar_policy::{Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression};
use time::OffsetDateTime;

/// What the runtime config says of a principal (`[principals.NAME]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalAttributes {
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The caller's OAuth scopes, from its token (never from the config).
    #[serde(skip)]
    pub scopes: Vec<String>,
}

/// The tool, as its manifest describes it.
#[derive(Clone, Debug, Default)]
pub struct ToolFacts {
    pub name: String,
    pub owner: String,
    pub tags: Vec<String>,
}

/// Size and SHA-256 of data a policy may not read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Digest {
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

impl Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest { size: data.len() as u64, sha256: hex::encode(sha2::Sha256::digest(data)) }
    }
}

/// What a call, or a task, has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub mints: u64,
    pub denials: u64,
}

/// The action asked for, with what it is on.
#[derive(Clone, Debug)]
pub enum PolicyAction {
    /// Calling the tool.
    Call,
    /// One outbound HTTP request.
    Http {
        method: String,
        /// `http` or `https`.
        scheme: String,
        host: String,
        port: u16,
        path: String,
        query: Digest,
        body: Digest,
    },
    /// One credential mint.
    Credential {
        name: String,
        provider: String,
        audience: String,
        scopes: Vec<String>,
        lifetime_seconds: u64,
        /// `inject` or `reveal`.
        exposure: String,
    },
    /// One raw socket connect or send.
    Socket {
        /// `tcp_connect` or `udp_send`.
        operation: String,
        /// `tcp` or `udp`.
        protocol: String,
        ip: std::net::IpAddr,
        port: u16,
    },
}

impl PolicyAction {
    /// The action's name in policies.
    pub fn name(&self) -> &'static str {
        match self {
            PolicyAction::Call => "call",
            PolicyAction::Http { .. } => "http",
            PolicyAction::Credential { .. } => "credential",
            PolicyAction::Socket { .. } => "socket",
        }
    }

    /// What it is on, in words (for audit events, approvals and `explain`).
    pub fn resource(&self, tool: &str) -> String {
        match self {
            PolicyAction::Call => format!("tool {tool}"),
            PolicyAction::Http { method, .. } => format!("{method} {}", self.url()),
            PolicyAction::Credential { name, audience, scopes, .. } => {
                format!("credential {name} for {audience} [{}]", scopes.join(" "))
            }
            PolicyAction::Socket { operation, ip, port, .. } => format!("{operation} {}", socket_address(*ip, *port)),
        }
    }

    /// An HTTP request's URL without its query.
    pub(crate) fn url(&self) -> String {
        match self {
            PolicyAction::Http { scheme, host, port, path, .. } => {
                let host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
                format!("{scheme}://{host}:{port}{path}")
            }
            _ => String::new(),
        }
    }
}

pub(crate) fn socket_address(ip: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}

/// Everything one decision is asked with.
#[derive(Clone, Debug)]
pub struct PolicyQuery {
    pub principal: String,
    pub principal_attributes: PrincipalAttributes,
    pub tool: ToolFacts,
    pub task: String,
    pub workload: String,
    pub task_age_seconds: u64,
    /// When it is asked (UTC).
    pub time: OffsetDateTime,
    /// This call so far.
    pub invocation: Counters,
    /// The whole task so far, this call included.
    pub task_total: Counters,
    /// The call's input.
    pub input: Digest,
    /// A person approved this exact action.
    pub approved: bool,
    /// The action asked for, with what it is on.
    pub action: PolicyAction,
    /// The principal's and task's entities, built once per task (`None`:
    /// built for this decision).
    pub task_entities: Option<Arc<TaskEntities>>,
}

/// The entities of a task's principal, of the task itself and of its tool,
/// with every attribute: the same for each of the task's decisions, so
/// built once.
#[derive(Clone)]
pub struct TaskEntities {
    entities: Entities,
}

impl std::fmt::Debug for TaskEntities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskEntities")
    }
}

impl TaskEntities {
    /// Those of `query`'s principal, task and tool.
    pub fn of(query: &PolicyQuery) -> Result<TaskEntities, String> {
        let everything = Reads::everything();
        let entities = [
            principal_entity(&everything, &query.principal, &query.principal_attributes)?,
            task_entity(&everything, &query.task, &query.workload)?,
            tool_entity(&everything, &query.tool)?,
        ];
        let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;
        Ok(TaskEntities { entities })
    }
}

fn principal_entity(reads: &Reads, principal: &str, attributes: &PrincipalAttributes) -> Result<Entity, String> {
    let mut attrs = Fields::new(reads, "principal");
    attrs
        .add("name", || string(principal))
        .add("roles", || strings(&attributes.roles))
        .add("groups", || strings(&attributes.groups))
        .add("scopes", || strings(&attributes.scopes));
    entity(uid(&types().principal, principal), attrs.attrs(), &[])
}

fn tool_entity(reads: &Reads, tool: &ToolFacts) -> Result<Entity, String> {
    let mut attrs = Fields::new(reads, "resource");
    attrs.add("name", || string(&tool.name)).add("owner", || string(&tool.owner)).add("tags", || strings(&tool.tags));
    entity(uid(&types().tool, &tool.name), attrs.attrs(), &[])
}

fn task_entity(reads: &Reads, task: &str, workload: &str) -> Result<Entity, String> {
    let mut attrs = Fields::new(reads, "context.task");
    attrs.add("id", || string(task)).add("workload", || string(workload));
    entity(uid(&types().task, task), attrs.attrs(), &[])
}

fn type_name(name: &'static str) -> EntityTypeName {
    EntityTypeName::from_str(name).expect("the schema's type names parse")
}

/// The entity type names, parsed once.
struct Types {
    principal: EntityTypeName,
    tool: EntityTypeName,
    task: EntityTypeName,
    endpoint: EntityTypeName,
    credential: EntityTypeName,
    address: EntityTypeName,
    action: EntityTypeName,
}

fn types() -> &'static Types {
    static TYPES: OnceLock<Types> = OnceLock::new();
    TYPES.get_or_init(|| Types {
        principal: type_name("Principal"),
        tool: type_name("Tool"),
        task: type_name("Task"),
        endpoint: type_name("Endpoint"),
        credential: type_name("Credential"),
        address: type_name("Address"),
        action: type_name("Action"),
    })
}

fn uid(kind: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(kind.clone(), EntityId::new(id))
}

fn string(value: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(value.to_owned())
}

/// Cedar's `Long` is signed 64-bit; counters beyond it are capped, not wrapped.
pub(crate) fn cedar_long(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn long(value: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(cedar_long(value))
}

fn strings(values: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(values.iter().map(|v| string(v)))
}

fn record(fields: Vec<(&'static str, RestrictedExpression)>) -> RestrictedExpression {
    RestrictedExpression::new_record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)))
        .expect("record fields are distinct")
}

/// An entity; Cedar evaluates its attributes, which can fail (its stack
/// check, where the stack is not one it knows), so a decision fails closed.
fn entity(
    uid: EntityUid,
    attrs: Vec<(&'static str, RestrictedExpression)>,
    parents: &[&EntityUid],
) -> Result<Entity, String> {
    let attrs: HashMap<String, RestrictedExpression> = attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let parents: HashSet<EntityUid> = parents.iter().map(|p| (*p).clone()).collect();
    Entity::new(uid, attrs, parents).map_err(|e| e.to_string())
}

/// The attributes the loaded policies read, as dotted paths from
/// `principal`, `resource` and `context` (`context.request.method`). A decision
/// builds only these: Cedar's request construction costs far more than its
/// evaluation, so an attribute no policy reads is not built. A path read
/// whole (`context.request == {...}`, or `principal` compared as a whole)
/// builds everything under it.
#[derive(Clone, Debug, Default)]
pub struct Reads {
    /// Every path read, as a tree from the variables down: a decision walks
    /// it beside the record it builds, so asking whether a field is wanted
    /// costs a few short comparisons, not a dotted key and a hash.
    tree: ReadTree,
    /// The paths read, dotted: everything under one is built.
    read: HashSet<String>,
}

/// One step of the paths read: read whole, or the names under it that are
/// read or on the way to one that is.
#[derive(Clone, Debug, Default)]
struct ReadTree {
    whole: bool,
    /// Few (a record's fields), so a list searched in order.
    under: Vec<(String, ReadTree)>,
}

impl ReadTree {
    fn child(&self, name: &str) -> Option<&ReadTree> {
        self.under.iter().find(|(under, _)| under == name).map(|(_, tree)| tree)
    }

    fn insert(&mut self, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            self.whole = true;
            return;
        };
        let at = match self.under.iter().position(|(under, _)| under == first) {
            Some(at) => at,
            None => {
                self.under.push((first.clone(), ReadTree::default()));
                self.under.len() - 1
            }
        };
        self.under[at].1.insert(rest);
    }

    /// Where the dotted `path` leads, and whether it, or a path holding it,
    /// is read whole (then there is nothing further to walk).
    fn walk(&self, path: &str) -> Walked<'_> {
        let mut at = self;
        for name in path.split('.') {
            if at.whole {
                return Walked::Whole;
            }
            match at.child(name) {
                Some(next) => at = next,
                None => return Walked::Unread,
            }
        }
        if at.whole { Walked::Whole } else { Walked::Into(at) }
    }
}

enum Walked<'a> {
    /// Read whole, or held by a path read whole.
    Whole,
    /// On the way to paths read below it.
    Into(&'a ReadTree),
    /// Nothing at or under it is read.
    Unread,
}

impl Reads {
    /// Every attribute (for `explain` and the benches that measure the whole request).
    pub fn everything() -> Reads {
        Reads { tree: ReadTree { whole: true, under: Vec::new() }, read: HashSet::new() }
    }

    /// What `policies` read, from their conditions.
    pub(crate) fn of<'a>(policies: impl IntoIterator<Item = &'a cedar_policy::Policy>) -> Reads {
        let mut paths = Vec::new();
        for policy in policies {
            // A policy that cannot be shown as JSON is read as reading everything.
            let Ok(json) = policy.to_json() else { return Reads::everything() };
            walk(&json["conditions"], &mut paths);
        }
        let mut tree = ReadTree::default();
        for path in &paths {
            tree.insert(path);
        }
        let read = paths.iter().map(|path| path.join(".")).collect();
        Reads { tree, read }
    }

    fn everything_read(&self) -> bool {
        self.tree.whole
    }

    /// True when everything read is fixed for a task's life: the
    /// principal's attributes (as they were when it opened), the task's, and
    /// the resource's where the resource is the task's tool (`call`). Then
    /// every decision of the task is the same, and one is enough.
    pub(crate) fn fixed_for_a_task(&self, resource_is_the_tool: bool) -> bool {
        !self.everything_read()
            && self.read.iter().all(|path| {
                let mut parts = path.split('.');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("principal"), Some(_), _) => true,
                    (Some("resource"), Some(_), _) => resource_is_the_tool,
                    (Some("context"), Some("task"), Some(_)) => true,
                    _ => false,
                }
            })
    }

    /// The paths read, dotted (`context.request.method`), in order.
    #[cfg(test)]
    pub(crate) fn dotted(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.read.iter().cloned().collect();
        paths.sort();
        paths
    }

    /// True when something at or under the path `dotted` is read (or the
    /// whole of something that holds it).
    pub(crate) fn reads_into(&self, dotted: &str) -> bool {
        !matches!(self.tree.walk(dotted), Walked::Unread)
    }
}

/// Collects the attribute paths an EST expression reads.
fn walk(node: &serde_json::Value, paths: &mut Vec<Vec<String>>) {
    match node {
        serde_json::Value::Object(map) => {
            for access in [".", "has"] {
                if let Some(inner) = map.get(access)
                    && let Some(mut path) = path_of(&inner["left"])
                {
                    match &inner["attr"] {
                        serde_json::Value::String(attr) => path.push(attr),
                        serde_json::Value::Array(attrs) => path.extend(attrs.iter().filter_map(|a| a.as_str())),
                        _ => {}
                    }
                    paths.push(path.into_iter().map(str::to_owned).collect());
                    return;
                }
            }
            if let Some(serde_json::Value::String(var)) = map.get("Var") {
                paths.push(vec![var.clone()]);
                return;
            }
            for value in map.values() {
                walk(value, paths);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, paths)),
        _ => {}
    }
}

/// `principal`, `resource` or `context`, or a chain of attribute accesses on one.
pub(crate) fn path_of(node: &serde_json::Value) -> Option<Vec<&str>> {
    if let Some(var) = node.get("Var").and_then(|v| v.as_str()) {
        return Some(vec![var]);
    }
    let inner = node.get(".")?;
    let mut path = path_of(&inner["left"])?;
    path.push(inner["attr"].as_str()?);
    Some(path)
}

/// A tree in which nothing is read.
fn empty_tree() -> &'static ReadTree {
    static EMPTY: ReadTree = ReadTree { whole: false, under: Vec::new() };
    &EMPTY
}

/// Record fields, each built only when read.
struct Fields<'a> {
    /// What is read under this record; `None`: it is read whole (or
    /// everything is), so every field is built.
    reads: Option<&'a ReadTree>,
    fields: Vec<(&'static str, RestrictedExpression)>,
}

impl<'a> Fields<'a> {
    /// The record at the dotted path `base`.
    fn new(reads: &'a Reads, base: &str) -> Fields<'a> {
        let reads = match reads.tree.walk(base) {
            Walked::Whole => None,
            Walked::Into(tree) => Some(tree),
            // Nothing under it is read: an empty tree wants no field.
            Walked::Unread => Some(empty_tree()),
        };
        Fields { reads, fields: Vec::new() }
    }

    /// What is read under field `name`: `Some(None)` for all of it, `None`
    /// for none of it.
    fn wanted(&self, name: &str) -> Option<Option<&'a ReadTree>> {
        match self.reads {
            None => Some(None),
            Some(tree) => tree.child(name).map(|under| (!under.whole).then_some(under)),
        }
    }

    fn add(&mut self, name: &'static str, value: impl FnOnce() -> RestrictedExpression) -> &mut Self {
        if self.wanted(name).is_some() {
            self.fields.push((name, value()));
        }
        self
    }

    /// A nested record, built from its own read fields.
    fn nested(&mut self, name: &'static str, build: impl FnOnce(&mut Fields<'a>)) -> &mut Self {
        if let Some(reads) = self.wanted(name) {
            let mut inner = Fields { reads, fields: Vec::new() };
            build(&mut inner);
            self.fields.push((name, record(inner.fields)));
        }
        self
    }

    fn digest(&mut self, name: &'static str, value: &Digest) -> &mut Self {
        self.nested(name, |d| {
            d.add("size", || long(value.size)).add("sha256", || string(&value.sha256));
        })
    }

    fn counters(&mut self, name: &'static str, value: &Counters) -> &mut Self {
        self.nested(name, |c| {
            c.add("requests", || long(value.requests))
                .add("bytes_sent", || long(value.bytes_sent))
                .add("bytes_received", || long(value.bytes_received))
                .add("mints", || long(value.mints))
                .add("denials", || long(value.denials));
        })
    }

    fn attrs(self) -> Vec<(&'static str, RestrictedExpression)> {
        self.fields
    }
}

/// The resource's entity, `in` its tool, where a policy reads it: its
/// attributes, or the resource whole (`resource in Tool::"x"` in a
/// condition). A tool scope needs none: it is dropped in the tool's slice.
fn resource_entity(
    entities: &mut Vec<Entity>,
    reads: &Reads,
    resource: &EntityUid,
    attrs: Fields<'_>,
    tool: &EntityUid,
) -> Result<(), String> {
    if reads.reads_into("resource") {
        entities.push(entity(resource.clone(), attrs.attrs(), &[tool])?);
    }
    Ok(())
}

impl PolicyQuery {
    /// A query standing for one whose decision failed (nothing reads it
    /// but the denial's audit record).
    pub(crate) fn failed() -> PolicyQuery {
        PolicyQuery {
            principal: String::new(),
            principal_attributes: PrincipalAttributes::default(),
            tool: ToolFacts::default(),
            task: String::new(),
            workload: String::new(),
            task_age_seconds: 0,
            time: time::OffsetDateTime::UNIX_EPOCH,
            invocation: Counters::default(),
            task_total: Counters::default(),
            input: Digest::default(),
            approved: false,
            action: PolicyAction::Call,
            task_entities: None,
        }
    }

    /// The Cedar request and the entities it refers to, with every
    /// attribute (public for the benches, which measure building it).
    #[doc(hidden)]
    pub fn to_cedar(&self) -> Result<(Request, Cow<'_, Entities>), String> {
        self.to_cedar_reading(&Reads::everything())
    }

    /// The Cedar request with the attributes `reads` names.
    pub(crate) fn to_cedar_reading(&self, reads: &Reads) -> Result<(Request, Cow<'_, Entities>), String> {
        let types = types();
        let principal = uid(&types.principal, &self.principal);
        let tool = uid(&types.tool, &self.tool.name);
        let task = uid(&types.task, &self.task);
        let mut entities = Vec::new();
        if self.task_entities.is_none() {
            if reads.reads_into("principal") {
                entities.push(principal_entity(reads, &self.principal, &self.principal_attributes)?);
            }
            if reads.reads_into("context.task") {
                entities.push(task_entity(reads, &self.task, &self.workload)?);
            }
        }
        let time = self.time.to_offset(time::UtcOffset::UTC);
        let mut context = Fields::new(reads, "context");
        context
            .nested("time", |t| {
                t.add("unix", || RestrictedExpression::new_long(time.unix_timestamp()))
                    .add("hour", || long(u64::from(time.hour())))
                    .add("minute", || long(u64::from(time.minute())))
                    .add("weekday", || long(u64::from(time.weekday().number_from_monday())));
            })
            .add("task", || RestrictedExpression::new_entity_uid(task.clone()))
            .add("task_age_seconds", || long(self.task_age_seconds))
            .counters("invocation", &self.invocation)
            .counters("task_total", &self.task_total)
            .digest("input", &self.input)
            .add("approved", || RestrictedExpression::new_bool(self.approved));
        let mut resource_attrs = Fields::new(reads, "resource");
        let resource = match &self.action {
            PolicyAction::Call => {
                // The task's entities hold the tool, where they are given.
                if self.task_entities.is_none() && reads.reads_into("resource") {
                    entities.push(tool_entity(reads, &self.tool)?);
                }
                tool.clone()
            }
            PolicyAction::Http { method, scheme, host, port, path, query, body } => {
                let url = self.action.url();
                let resource = uid(&types.endpoint, &url);
                resource_attrs
                    .add("url", || string(&url))
                    .add("scheme", || string(scheme))
                    .add("host", || string(host))
                    .add("port", || long(u64::from(*port)))
                    .add("path", || string(path));
                resource_entity(&mut entities, reads, &resource, resource_attrs, &tool)?;
                context.nested("request", |r| {
                    r.add("method", || string(method))
                        .add("scheme", || string(scheme))
                        .add("host", || string(host))
                        .add("port", || long(u64::from(*port)))
                        .add("path", || string(path))
                        .digest("query", query)
                        .digest("body", body);
                });
                resource
            }
            PolicyAction::Credential { name, provider, audience, scopes, lifetime_seconds, exposure } => {
                let resource = uid(&types.credential, name);
                resource_attrs
                    .add("name", || string(name))
                    .add("provider", || string(provider))
                    .add("audience", || string(audience));
                resource_entity(&mut entities, reads, &resource, resource_attrs, &tool)?;
                context.nested("credential", |c| {
                    c.add("name", || string(name))
                        .add("provider", || string(provider))
                        .add("audience", || string(audience))
                        .add("scopes", || strings(scopes))
                        .add("lifetime_seconds", || long(*lifetime_seconds))
                        .add("exposure", || string(exposure));
                });
                resource
            }
            PolicyAction::Socket { operation, protocol, ip, port } => {
                let resource = uid(&types.address, &socket_address(*ip, *port));
                resource_attrs
                    .add("ip", || string(&ip.to_string()))
                    .add("port", || long(u64::from(*port)))
                    .add("protocol", || string(protocol));
                resource_entity(&mut entities, reads, &resource, resource_attrs, &tool)?;
                context.nested("socket", |s| {
                    s.add("operation", || string(operation))
                        .add("protocol", || string(protocol))
                        .add("ip", || string(&ip.to_string()))
                        .add("port", || long(u64::from(*port)));
                });
                resource
            }
        };
        let text = |e: &dyn std::fmt::Display| e.to_string();
        let context =
            Context::from_pairs(context.attrs().into_iter().map(|(k, v)| (k.to_owned(), v))).map_err(|e| text(&e))?;
        let action = uid(&types.action, self.action.name());
        let request = Request::new(principal, action, resource, context, None).map_err(|e| text(&e))?;
        let entities = match &self.task_entities {
            None => Cow::Owned(Entities::from_entities(entities, None).map_err(|e| text(&e))?),
            Some(cached) if entities.is_empty() => Cow::Borrowed(&cached.entities),
            Some(cached) => Cow::Owned(cached.entities.clone().add_entities(entities, None).map_err(|e| text(&e))?),
        };
        Ok((request, entities))
    }
}
