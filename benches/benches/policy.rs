//! One request-time policy decision: the Cedar request built from the
//! runtime's facts and evaluated against the loaded policies. Timings here,
//! never in tests; `benches/README.md` has the figures.

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use toolcell_runtime::request_policy::{
    Counters, Digest, PolicyAction, PolicyMode, PolicyQuery, PolicySource, PrincipalAttributes, RequestPolicies,
    TaskEntities, ToolFacts,
};

/// 100 policies of the kinds operators write, spread over 20 tools and the
/// four actions: per-tool method forbids, role requirements, business
/// hours, byte budgets and request caps, mint caps, socket ports, and
/// approval permits.
fn hundred_policies() -> Vec<PolicySource> {
    let mut text = String::new();
    for tool in 0..20 {
        text.push_str(&format!(
            "@id(\"t{tool}-no-delete\") @reason(\"no deletes\")\n\
             forbid (principal, action == Action::\"http\", resource in Tool::\"tool-{tool}\") when {{ context.request.method == \"DELETE\" }};\n\
             @id(\"t{tool}-writer\") forbid (principal, action == Action::\"http\", resource in Tool::\"tool-{tool}\")\n\
               when {{ context.request.method == \"POST\" }} unless {{ principal.roles.contains(\"writer-{tool}\") || principal.groups.contains(\"admins\") }};\n\
             @id(\"t{tool}-hours\") forbid (principal, action == Action::\"http\", resource in Tool::\"tool-{tool}\")\n\
               when {{ context.request.method != \"GET\" }} unless {{ context.time.weekday <= 5 && context.time.hour >= 8 && context.time.hour < 18 }};\n\
             @id(\"t{tool}-budget\") forbid (principal, action == Action::\"http\", resource in Tool::\"tool-{tool}\")\n\
               when {{ context.task_total.bytes_sent + context.request.body.size > {budget} || context.invocation.requests >= 50 }};\n\
             @id(\"t{tool}-mints\") forbid (principal, action == Action::\"credential\", resource in Tool::\"tool-{tool}\")\n\
               when {{ context.task_total.mints >= 10 || context.credential.lifetime_seconds > 600 }};\n",
            budget = 1_000_000 + tool * 1000
        ));
    }
    vec![PolicySource { file: PathBuf::from("hundred.cedar"), text }]
}

/// A decision as the runtime asks it: the principal's and task's entities
/// are built once per task, the rest per decision.
fn query(action: PolicyAction) -> PolicyQuery {
    let mut query = uncached(action);
    query.task_entities = Some(Arc::new(TaskEntities::of(&query).unwrap()));
    query
}

fn uncached(action: PolicyAction) -> PolicyQuery {
    PolicyQuery {
        principal: "alice".into(),
        principal_attributes: PrincipalAttributes {
            roles: vec!["writer-7".into()],
            groups: vec!["eng".into()],
            scopes: vec![],
        },
        tool: ToolFacts { name: "tool-7".into(), owner: "tools@example.com".into(), tags: vec!["internal".into()] },
        task: "0f3c2a9e-4f51-4a55-9d7e-0a3a3c3c1e11".into(),
        workload: "spiffe://toolcell.local/tool/tool-7/task/0f3c2a9e-4f51-4a55-9d7e-0a3a3c3c1e11".into(),
        task_age_seconds: 2,
        time: time::macros::datetime!(2026-12-01 10:00 UTC),
        invocation: Counters { requests: 3, bytes_sent: 2048, bytes_received: 65536, mints: 1, denials: 0 },
        task_total: Counters { requests: 12, bytes_sent: 8192, bytes_received: 262144, mints: 2, denials: 1 },
        input: Digest::of(br#"{"repo":"acme/app","title":"crash on start"}"#),
        approved: false,
        action,
        task_entities: None,
    }
}

fn http_post() -> PolicyAction {
    PolicyAction::Http {
        method: "POST".into(),
        scheme: "https".into(),
        host: "api.github.com".into(),
        port: 443,
        path: "/repos/acme/app/issues".into(),
        query: Digest::of(b""),
        body: Digest::of(br#"{"title":"crash on start","body":"..."}"#),
    }
}

fn decisions(c: &mut Criterion) {
    let hundred = RequestPolicies::load(&hundred_policies(), PolicyMode::Ceiling).unwrap();
    assert_eq!(hundred.len(), 100);
    let examples_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let examples = RequestPolicies::load(&PolicySource::read_dir(&examples_dir).unwrap(), PolicyMode::Ceiling).unwrap();
    let none = RequestPolicies::none();
    let post = query(http_post());
    let call = query(PolicyAction::Call);
    // Both are allowed: every policy is evaluated (none short-circuits a denial).
    assert!(matches!(hundred.evaluate(&post), toolcell_runtime::request_policy::PolicyVerdict::Allow { .. }));

    let mut group = c.benchmark_group("decision");
    group.bench_function("100 policies/http POST", |b| b.iter(|| hundred.evaluate(std::hint::black_box(&post))));
    group.bench_function("100 policies/call", |b| b.iter(|| hundred.evaluate(std::hint::black_box(&call))));
    let mut other_tool = query(http_post());
    other_tool.tool.name = "tool-without-policies".into();
    group.bench_function("100 policies/http POST, a tool none names", |b| {
        b.iter(|| hundred.evaluate(std::hint::black_box(&other_tool)))
    });
    group.bench_function("examples (7)/http POST", |b| b.iter(|| examples.evaluate(std::hint::black_box(&post))));
    group.bench_function("examples (7)/call", |b| b.iter(|| examples.evaluate(std::hint::black_box(&call))));
    let first = uncached(http_post());
    group.bench_function("100 policies/http POST, first of its task", |b| {
        b.iter(|| hundred.evaluate(std::hint::black_box(&first)))
    });
    group.bench_function("none/http POST", |b| b.iter(|| none.evaluate(std::hint::black_box(&post))));
    group.bench_function("build request (http POST)", |b| b.iter(|| std::hint::black_box(&post).to_cedar().unwrap()));
    let (request, entities) = post.to_cedar().unwrap();
    {
        use cedar_policy::{Context, Entities, Entity, EntityUid, RestrictedExpression as R};
        let pairs = || (0..20).map(|i| (format!("k{i}"), R::new_long(i))).collect::<Vec<_>>();
        group.bench_function("context of 20 longs", |b| b.iter(|| Context::from_pairs(pairs()).unwrap()));
        let records = || {
            (0..4)
                .map(|i| (format!("r{i}"), R::new_record((0..5).map(|j| (format!("f{j}"), R::new_long(j)))).unwrap()))
                .collect::<Vec<_>>()
        };
        group.bench_function("context of 4 records of 5", |b| b.iter(|| Context::from_pairs(records()).unwrap()));
        let uid: EntityUid = r#"Tool::"t""#.parse().unwrap();
        group.bench_function("one entity, 3 string attrs", |b| {
            b.iter(|| {
                let attrs = (0..3).map(|i| (format!("a{i}"), R::new_string("x".into()))).collect();
                Entity::new(uid.clone(), attrs, Default::default()).unwrap()
            })
        });
        let one = Entity::new_no_attrs(uid.clone(), Default::default());
        group.bench_function("entities of 4", |b| {
            b.iter(|| Entities::from_entities(entities.iter().cloned(), None).unwrap())
        });
        group.bench_function("entities of 1 (no attrs)", |b| {
            b.iter(|| Entities::from_entities([one.clone()], None).unwrap())
        });
    }
    let set: cedar_policy::PolicySet = r#"permit(principal, action, resource);"#.parse().unwrap();
    group.bench_function("authorize prebuilt (1 policy)", |b| {
        b.iter(|| cedar_policy::Authorizer::new().is_authorized(&request, &set, &entities))
    });
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
