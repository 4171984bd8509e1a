//! One Cedar request, as the runtime builds it for a decision: the
//! principal, the tool and the task as entities, the action, its resource
//! (an entity `in` the tool), and the context.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
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
    fn url(&self) -> String {
        match self {
            PolicyAction::Http { scheme, host, port, path, .. } => {
                let host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
                format!("{scheme}://{host}:{port}{path}")
            }
            _ => String::new(),
        }
    }
}

fn socket_address(ip: std::net::IpAddr, port: u16) -> String {
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
    pub action: PolicyAction,
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
fn long(value: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(value).unwrap_or(i64::MAX))
}

fn strings(values: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(values.iter().map(|v| string(v)))
}

fn record(fields: Vec<(&str, RestrictedExpression)>) -> RestrictedExpression {
    RestrictedExpression::new_record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)))
        .expect("record fields are distinct")
}

fn digest(value: &Digest) -> RestrictedExpression {
    record(vec![("size", long(value.size)), ("sha256", string(&value.sha256))])
}

fn counters(value: &Counters) -> RestrictedExpression {
    record(vec![
        ("requests", long(value.requests)),
        ("bytes_sent", long(value.bytes_sent)),
        ("bytes_received", long(value.bytes_received)),
        ("mints", long(value.mints)),
        ("denials", long(value.denials)),
    ])
}

fn entity(uid: EntityUid, attrs: Vec<(&str, RestrictedExpression)>, parents: &[&EntityUid]) -> Entity {
    let attrs: HashMap<String, RestrictedExpression> = attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let parents: HashSet<EntityUid> = parents.iter().map(|p| (*p).clone()).collect();
    Entity::new(uid, attrs, parents).expect("attributes are literal values")
}

impl PolicyQuery {
    /// The Cedar request and the entities it refers to.
    pub(crate) fn to_cedar(&self) -> (Request, Entities) {
        let types = types();
        let principal = uid(&types.principal, &self.principal);
        let tool = uid(&types.tool, &self.tool.name);
        let task = uid(&types.task, &self.task);
        let mut entities = vec![
            entity(
                principal.clone(),
                vec![
                    ("name", string(&self.principal)),
                    ("roles", strings(&self.principal_attributes.roles)),
                    ("groups", strings(&self.principal_attributes.groups)),
                ],
                &[],
            ),
            entity(
                tool.clone(),
                vec![
                    ("name", string(&self.tool.name)),
                    ("owner", string(&self.tool.owner)),
                    ("tags", strings(&self.tool.tags)),
                ],
                &[],
            ),
            entity(task.clone(), vec![("id", string(&self.task)), ("workload", string(&self.workload))], &[]),
        ];
        let time = self.time.to_offset(time::UtcOffset::UTC);
        let mut context = vec![
            (
                "time",
                record(vec![
                    ("unix", RestrictedExpression::new_long(time.unix_timestamp())),
                    ("hour", long(u64::from(time.hour()))),
                    ("minute", long(u64::from(time.minute()))),
                    ("weekday", long(u64::from(time.weekday().number_from_monday()))),
                ]),
            ),
            ("task", RestrictedExpression::new_entity_uid(task)),
            ("task_age_seconds", long(self.task_age_seconds)),
            ("invocation", counters(&self.invocation)),
            ("task_total", counters(&self.task_total)),
            ("input", digest(&self.input)),
            ("approved", RestrictedExpression::new_bool(self.approved)),
        ];
        let resource = match &self.action {
            PolicyAction::Call => tool.clone(),
            PolicyAction::Http { method, scheme, host, port, path, query, body } => {
                let url = self.action.url();
                let resource = uid(&types.endpoint, &url);
                entities.push(entity(
                    resource.clone(),
                    vec![
                        ("url", string(&url)),
                        ("scheme", string(scheme)),
                        ("host", string(host)),
                        ("port", long(u64::from(*port))),
                        ("path", string(path)),
                    ],
                    &[&tool],
                ));
                context.push((
                    "request",
                    record(vec![
                        ("method", string(method)),
                        ("scheme", string(scheme)),
                        ("host", string(host)),
                        ("port", long(u64::from(*port))),
                        ("path", string(path)),
                        ("query", digest(query)),
                        ("body", digest(body)),
                    ]),
                ));
                resource
            }
            PolicyAction::Credential { name, provider, audience, scopes, lifetime_seconds, exposure } => {
                let resource = uid(&types.credential, name);
                entities.push(entity(
                    resource.clone(),
                    vec![("name", string(name)), ("provider", string(provider)), ("audience", string(audience))],
                    &[&tool],
                ));
                context.push((
                    "credential",
                    record(vec![
                        ("name", string(name)),
                        ("provider", string(provider)),
                        ("audience", string(audience)),
                        ("scopes", strings(scopes)),
                        ("lifetime_seconds", long(*lifetime_seconds)),
                        ("exposure", string(exposure)),
                    ]),
                ));
                resource
            }
            PolicyAction::Socket { operation, protocol, ip, port } => {
                let resource = uid(&types.address, &socket_address(*ip, *port));
                entities.push(entity(
                    resource.clone(),
                    vec![
                        ("ip", string(&ip.to_string())),
                        ("port", long(u64::from(*port))),
                        ("protocol", string(protocol)),
                    ],
                    &[&tool],
                ));
                context.push((
                    "socket",
                    record(vec![
                        ("operation", string(operation)),
                        ("protocol", string(protocol)),
                        ("ip", string(&ip.to_string())),
                        ("port", long(u64::from(*port))),
                    ]),
                ));
                resource
            }
        };
        let context = Context::from_pairs(context.into_iter().map(|(k, v)| (k.to_owned(), v)))
            .expect("context keys are distinct");
        let action = uid(&types.action, self.action.name());
        let request = Request::new(principal, action, resource, context, None).expect("requests are built whole");
        let entities = Entities::from_entities(entities, None).expect("entity uids are distinct");
        (request, entities)
    }
}
