use std::path::{Path, PathBuf};

use time::macros::datetime;

use super::*;

/// The example policies in the repository's `policies/` directory.
fn examples() -> Vec<PolicySource> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    PolicySource::read_dir(&dir).unwrap()
}

fn source(name: &str, text: &str) -> PolicySource {
    PolicySource { file: PathBuf::from(name), text: text.to_owned() }
}

/// A Tuesday, 10:00 UTC.
fn query(tool: &str, action: PolicyAction) -> PolicyQuery {
    PolicyQuery {
        principal: "alice".into(),
        principal_attributes: PrincipalAttributes { roles: vec!["writer".into()], ..Default::default() },
        tool: ToolFacts { name: tool.into(), owner: "tools@example.com".into(), tags: vec![] },
        task: "t1".into(),
        workload: "spiffe://toolcell.local/tool/x/task/t1".into(),
        task_age_seconds: 3,
        time: datetime!(2026-12-01 10:00 UTC),
        invocation: Counters::default(),
        task_total: Counters::default(),
        input: Digest::of(b"{}"),
        approved: false,
        action,
        task_entities: None,
    }
}

fn http(method: &str, body: u64) -> PolicyAction {
    PolicyAction::Http {
        method: method.into(),
        scheme: "https".into(),
        host: "api.github.com".into(),
        port: 443,
        path: "/repos/acme/issues".into(),
        query: Digest::default(),
        body: Digest { size: body, sha256: String::new() },
    }
}

#[test]
fn with_no_policies_ceiling_allows_what_the_grant_allows_and_strict_allows_nothing() {
    let none = RequestPolicies::none();
    assert!(none.is_inert());
    assert_eq!(
        none.evaluate(&query("x", PolicyAction::Call)),
        PolicyVerdict::Allow { policies: vec!["manifest".into()] }
    );
    let strict = RequestPolicies::load(&[], PolicyMode::Strict).unwrap();
    let PolicyVerdict::Deny { policies, reason } = strict.evaluate(&query("x", PolicyAction::Call)) else { panic!() };
    assert!(policies.is_empty());
    assert_eq!(reason, "no policy permits `call` on tool x (policy mode strict)");
}

#[test]
fn the_examples_load_and_decide_by_their_ids() {
    let policies = RequestPolicies::load(&examples(), PolicyMode::Ceiling).unwrap();
    assert_eq!(policies.len(), 7);
    // A GET is allowed by the manifest and the read permit.
    let verdict = policies.evaluate(&query("github-issues", http("GET", 0)));
    assert_eq!(verdict, PolicyVerdict::Allow { policies: vec!["manifest".into(), "read-issues".into()] });
    // A POST in business hours, by a writer, waits for approval.
    let verdict = policies.evaluate(&query("github-issues", http("POST", 10)));
    assert_eq!(
        verdict,
        PolicyVerdict::Approval {
            policies: vec!["approve-new-issues".into(), "manifest".into()],
            reason: "opening an issue is visible to customers".into()
        }
    );
    let mut approved = query("github-issues", http("POST", 10));
    approved.approved = true;
    assert!(matches!(policies.evaluate(&approved), PolicyVerdict::Allow { .. }));
    // At night it is forbidden, approval or not.
    let mut night = approved.clone();
    night.time = datetime!(2026-12-01 22:30 UTC);
    let PolicyVerdict::Deny { policies: ids, reason } = policies.evaluate(&night) else { panic!() };
    assert_eq!(ids, ["github-writes-in-business-hours"]);
    assert_eq!(
        reason,
        "denied by policy `github-writes-in-business-hours`: github-issues writes only Monday to Friday, \
         08:00-18:00 UTC"
    );
    // So on a Saturday.
    night.time = datetime!(2026-12-05 10:00 UTC);
    assert!(matches!(policies.evaluate(&night), PolicyVerdict::Deny { .. }));
    // A POST needs the writer role, on any tool.
    let mut reader = query("http-get", http("POST", 10));
    reader.principal_attributes.roles.clear();
    let PolicyVerdict::Deny { policies: ids, .. } = policies.evaluate(&reader) else { panic!() };
    assert_eq!(ids, ["post-needs-writer-role"]);
    reader.action = http("GET", 0);
    assert_eq!(policies.evaluate(&reader), PolicyVerdict::Allow { policies: vec!["manifest".into()] });
}

#[test]
fn counters_in_context_stop_the_request_that_would_cross_a_budget() {
    let policies = RequestPolicies::load(&examples(), PolicyMode::Ceiling).unwrap();
    let mut within = query("http-get", http("PUT", 48_576));
    within.task_total.bytes_sent = 1_000_000;
    assert!(matches!(policies.evaluate(&within), PolicyVerdict::Allow { .. }));
    within.action = http("PUT", 48_577);
    let PolicyVerdict::Deny { policies: ids, .. } = policies.evaluate(&within) else { panic!() };
    assert_eq!(ids, ["egress-byte-budget"]);
    let mint = |mints| {
        let mut asked = query(
            "http-get",
            PolicyAction::Credential {
                name: "api".into(),
                provider: "issuer".into(),
                audience: "https://api.test".into(),
                scopes: vec!["read".into()],
                lifetime_seconds: 60,
                exposure: "inject".into(),
            },
        );
        asked.task_total.mints = mints;
        policies.evaluate(&asked)
    };
    assert!(matches!(mint(4), PolicyVerdict::Allow { .. }));
    assert!(matches!(mint(5), PolicyVerdict::Deny { ref policies, .. } if policies == &["mint-cap-per-task"]));
}

#[test]
fn strict_mode_needs_a_permit_and_the_manifest_permit_is_not_implied() {
    let policies = RequestPolicies::load(&examples(), PolicyMode::Strict).unwrap();
    assert_eq!(
        policies.evaluate(&query("github-issues", http("GET", 0))),
        PolicyVerdict::Allow { policies: vec!["read-issues".into()] }
    );
    assert!(matches!(policies.evaluate(&query("http-get", http("GET", 0))), PolicyVerdict::Deny { .. }));
    let socket = PolicyAction::Socket {
        operation: "tcp_connect".into(),
        protocol: "tcp".into(),
        ip: "127.0.0.1".parse().unwrap(),
        port: 5432,
    };
    let permit = source(
        "db.cedar",
        "permit (principal, action == Action::\"socket\", resource) when { resource.port == 5432 };",
    );
    let policies = RequestPolicies::load(&[permit], PolicyMode::Strict).unwrap();
    assert_eq!(policies.evaluate(&query("db", socket)), PolicyVerdict::Allow { policies: vec!["db.1".into()] });
}

#[test]
fn a_forbid_that_cannot_be_evaluated_denies() {
    // An overflow is an evaluation error; the guard fails closed.
    let text = "@id(\"overflow\")\nforbid (principal, action == Action::\"call\", resource) when { context.time.unix * 9223372036854775807 > 0 };";
    let policies = RequestPolicies::load(&[source("o.cedar", text)], PolicyMode::Ceiling).unwrap();
    let PolicyVerdict::Deny { policies: ids, reason } = policies.evaluate(&query("x", PolicyAction::Call)) else {
        panic!()
    };
    assert_eq!(ids, ["overflow"]);
    assert!(reason.starts_with("policy `overflow` could not be evaluated, so it denies"), "{reason}");
}

#[test]
fn bad_policies_are_refused_whole_with_file_line_and_column() {
    let good = source("good.cedar", "forbid (principal, action == Action::\"call\", resource);");
    let cases = [
        ("permit (principal, action, resource)\nwhen { context.time.hour > };", "bad.cedar:2:", "unexpected token"),
        ("permit (principal, action == Action::\"delete\", resource);", "bad.cedar:1:", "delete"),
        (
            "permit (principal, action == Action::\"http\", resource)\n  when { context.request.verb == \"GET\" };",
            "bad.cedar:2:",
            "verb",
        ),
        (
            "forbid (principal, action == Action::\"call\", resource)\n  when { principal.roles == 3 };",
            "bad.cedar:2:",
            "",
        ),
        ("@approval(\"x\")\nforbid (principal, action, resource);", "bad.cedar:", "@approval belongs on a `permit`"),
        ("@id(\"manifest\")\npermit (principal, action, resource);", "bad.cedar:", "the runtime's own"),
        ("permit (principal == ?principal, action, resource);", "bad.cedar:", "templates"),
    ];
    for (text, at, says) in cases {
        let error = RequestPolicies::load(&[good.clone(), source("bad.cedar", text)], PolicyMode::Ceiling).unwrap_err();
        let shown = error.to_string();
        assert!(shown.starts_with(at), "{text}: {shown}");
        assert!(shown.contains(says), "{text}: {shown}");
        assert!(error.problems.iter().all(|p| p.file == Path::new("bad.cedar")), "{shown}");
    }
    let twice = [
        source("a.cedar", "@id(\"x\") permit (principal, action, resource);"),
        source("b.cedar", "@id(\"x\") forbid (principal, action, resource);"),
    ];
    let error = RequestPolicies::load(&twice, PolicyMode::Ceiling).unwrap_err();
    assert_eq!(error.to_string(), "b.cedar: policy `x`: the id is also used in a.cedar");
}

#[test]
fn policies_see_only_their_action() {
    // A policy scoped to one action is not asked about another.
    let text = "@id(\"no-sockets\") forbid (principal, action == Action::\"socket\", resource);";
    let policies = RequestPolicies::load(&[source("s.cedar", text)], PolicyMode::Ceiling).unwrap();
    assert!(matches!(policies.evaluate(&query("x", http("GET", 0))), PolicyVerdict::Allow { .. }));
    let socket = PolicyAction::Socket {
        operation: "tcp_connect".into(),
        protocol: "tcp".into(),
        ip: "::1".parse().unwrap(),
        port: 1,
    };
    assert!(matches!(policies.evaluate(&query("x", socket)), PolicyVerdict::Deny { .. }));
}

#[test]
fn every_request_the_runtime_builds_matches_the_schema() {
    let schema = schema::schema();
    for action in [
        PolicyAction::Call,
        http("GET", 1),
        PolicyAction::Credential {
            name: "c".into(),
            provider: "static".into(),
            audience: "a".into(),
            scopes: vec![],
            lifetime_seconds: 1,
            exposure: "reveal".into(),
        },
        PolicyAction::Socket {
            operation: "udp_send".into(),
            protocol: "udp".into(),
            ip: "127.0.0.1".parse().unwrap(),
            port: 53,
        },
    ] {
        let asked = query("x", action);
        let (request, entities) = asked.to_cedar().unwrap();
        let context = request.context().unwrap().clone();
        cedar_policy::Request::new(
            request.principal().unwrap().clone(),
            request.action().unwrap().clone(),
            request.resource().unwrap().clone(),
            context,
            Some(schema),
        )
        .unwrap();
        cedar_policy::Entities::from_entities(entities.iter().cloned(), Some(schema)).unwrap();
    }
}

#[test]
fn only_what_policies_read_is_built_and_the_decisions_are_the_same() {
    let policies = RequestPolicies::load(&examples(), PolicyMode::Ceiling).unwrap();
    let paths: Vec<String> = policies.reads_for("http", "github-issues").dotted();
    for read in ["context.request.method", "context.time.hour", "context.task_total.bytes_sent", "principal.roles"] {
        assert!(paths.contains(&read.to_owned()), "{paths:?}");
    }
    assert!(!paths.iter().any(|p| p.starts_with("context.input") || p.starts_with("resource.")), "{paths:?}");
    // A call's decision builds only what the one call policy reads.
    assert_eq!(policies.reads_for("call", "word-count").dotted(), ["principal.groups", "resource.tags"]);
    // A call decision reads only what is fixed for a task; an HTTP one does not.
    assert!(policies.fixed_for_a_task("call", "word-count") && !policies.fixed_for_a_task("http", "github-issues"));
    // No policy decides sockets: nothing is built or asked.
    assert!(!policies.decides("socket", "word-count") && policies.decides("call", "word-count"));
    let everything = RequestPolicies::load(&examples(), PolicyMode::Ceiling).unwrap().reading_everything();
    let mut queries = vec![query("github-issues", http("POST", 10)), query("http-get", http("GET", 0))];
    let mut night = query("github-issues", http("PUT", 2_000_000));
    night.time = datetime!(2026-12-06 23:59 UTC);
    night.principal_attributes.roles.clear();
    queries.push(night);
    queries.push(query("x", PolicyAction::Call));
    for asked in &queries {
        assert_eq!(policies.evaluate(asked), everything.evaluate(asked), "{asked:?}");
        // With the task's entities built once, as the runtime asks.
        let mut cached = asked.clone();
        cached.task_entities = Some(std::sync::Arc::new(TaskEntities::of(asked).unwrap()));
        assert_eq!(policies.evaluate(&cached), everything.evaluate(asked), "{asked:?}");
    }
}

#[test]
fn an_approval_permit_that_cannot_be_evaluated_still_asks() {
    let text = "@id(\"odd\") @approval(\"checked by a person\")\npermit (principal, action == Action::\"call\", resource) when { context.time.unix * 9223372036854775807 > 0 };";
    let policies = RequestPolicies::load(&[source("a.cedar", text)], PolicyMode::Ceiling).unwrap();
    let PolicyVerdict::Approval { reason, .. } = policies.evaluate(&query("x", PolicyAction::Call)) else { panic!() };
    assert_eq!(reason, "checked by a person");
}

#[test]
fn contractors_do_not_call_internal_tools() {
    let policies = RequestPolicies::load(&examples(), PolicyMode::Ceiling).unwrap();
    let mut asked = query("payroll", PolicyAction::Call);
    asked.tool.tags = vec!["internal".into()];
    assert!(matches!(policies.evaluate(&asked), PolicyVerdict::Allow { .. }));
    asked.principal_attributes.groups = vec!["contractors".into()];
    let PolicyVerdict::Deny { policies: ids, reason } = policies.evaluate(&asked) else { panic!() };
    assert_eq!(ids, ["no-internal-tools-for-contractors"]);
    assert!(reason.ends_with("tools tagged `internal` are for employees"), "{reason}");
    asked.tool.tags.clear();
    assert!(matches!(policies.evaluate(&asked), PolicyVerdict::Allow { .. }));
}

#[test]
fn a_policy_reads_the_callers_token_scopes() {
    let text = r#"
@id("post-needs-write-scope")
@reason("a POST needs a token with the issues:write scope")
forbid (principal, action == Action::"http", resource)
when { context.request.method == "POST" && !principal.scopes.contains("issues:write") };
"#;
    let policies = RequestPolicies::load(&[source("scopes.cedar", text)], PolicyMode::Ceiling).unwrap();
    let mut asked = query("github-issues", http("POST", 10));
    let PolicyVerdict::Deny { policies: ids, .. } = policies.evaluate(&asked) else {
        panic!("allowed without the scope")
    };
    assert_eq!(ids, ["post-needs-write-scope"]);
    asked.principal_attributes.scopes = vec!["tools:call".into(), "issues:write".into()];
    assert!(matches!(policies.evaluate(&asked), PolicyVerdict::Allow { .. }));
    assert!(matches!(policies.evaluate(&query("github-issues", http("GET", 0))), PolicyVerdict::Allow { .. }));
}

/// Policies using every construct the native evaluation compiles, for the
/// differential test below.
const EVERY_CONSTRUCT: &str = r#"
@id("scoped-principal") forbid (principal == Principal::"mallory", action, resource);
@id("principal-in") forbid (principal in Principal::"eve", action == Action::"call", resource);
@id("resource-is") forbid (principal, action == Action::"http", resource is Endpoint)
  when { resource.port == 8443 && resource.scheme == "https" };
@id("resource-is-in") forbid (principal, action, resource is Endpoint in Tool::"github-issues")
  when { context.request.path == "/admin" };
@id("action-in") forbid (principal, action in [Action::"http", Action::"credential"], resource)
  when { context.task_total.denials > 3 };
@id("if-then-else") forbid (principal, action == Action::"http", resource)
  when { if context.request.method == "GET" then context.request.query.size > 4096 else context.request.body.size - 10 < -5 };
@id("arith") forbid (principal, action == Action::"http", resource)
  when { context.invocation.bytes_sent * 2 + -context.invocation.bytes_received > 100000 };
@id("sets") forbid (principal, action, resource)
  when { principal.groups.containsAny(["contractors", "guests"]) && !principal.roles.containsAll(["reader", "writer"]) };
@id("set-equality") forbid (principal, action == Action::"call", resource)
  when { resource.tags == ["legacy", "internal"] || resource.tags.isEmpty() && resource.owner == "nobody@example.com" };
@id("in-condition") forbid (principal, action == Action::"http", resource)
  when { resource in Tool::"payroll" && context.request.method == "DELETE" };
@id("in-set") forbid (principal, action == Action::"call", resource)
  when { resource in [Tool::"retired-a", Tool::"retired-b"] };
@id("task-entity") forbid (principal, action == Action::"credential", resource)
  when { !(context.task.workload like "*quarantine*") && context.task == Task::"t-stopped" };
@id("credential-scopes") forbid (principal, action == Action::"credential", resource)
  when { context.credential.lifetime_seconds > 3600 && context.credential.scopes.contains("admin") };
@id("has") forbid (principal, action == Action::"http", resource)
  when { context.request.body has size && context.request.body.size > 1000000 && principal has roles && principal.roles.isEmpty() };
@id("is-in-condition") forbid (principal, action == Action::"socket", resource)
  when { resource is Address && context.socket.port == 25 && context.socket.protocol == "tcp" };
@id("time") forbid (principal, action == Action::"call", resource)
  when { context.time.weekday > 5 && context.time.minute < 30 && context.time.unix > 0 && context.approved == false };
@id("approval") @approval("a person checks large inputs")
  permit (principal, action == Action::"call", resource) when { context.input.size > 1000 };
@id("strict-permit") permit (principal, action, resource) when { principal.name != "nobody" && context.task.id != "" };
"#;

/// Queries across the actions and the values the policies above test.
fn many_queries() -> Vec<PolicyQuery> {
    let mut queries = Vec::new();
    let tools = ["github-issues", "payroll", "retired-a", "word-count"];
    let principals = ["alice", "mallory", "eve"];
    let actions = [
        PolicyAction::Call,
        http("GET", 0),
        http("POST", 10),
        http("DELETE", 2_000_000),
        PolicyAction::Http {
            method: "PUT".into(),
            scheme: "https".into(),
            host: "h".into(),
            port: 8443,
            path: "/admin".into(),
            query: Digest { size: 5000, sha256: "ab".into() },
            body: Digest { size: 2, sha256: "cd".into() },
        },
        PolicyAction::Credential {
            name: "gh".into(),
            provider: "oauth".into(),
            audience: "api".into(),
            scopes: vec!["admin".into(), "repo".into()],
            lifetime_seconds: 7200,
            exposure: "inject".into(),
        },
        PolicyAction::Socket {
            operation: "tcp_connect".into(),
            protocol: "tcp".into(),
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            port: 25,
        },
    ];
    for (n, action) in actions.iter().enumerate() {
        for (t, tool) in tools.iter().enumerate() {
            for (p, principal) in principals.iter().enumerate() {
                let mut asked = query(tool, action.clone());
                asked.principal = (*principal).into();
                let i = n + t + p;
                asked.time = if i % 2 == 0 { datetime!(2026-12-05 07:15 UTC) } else { datetime!(2026-12-01 19:45 UTC) };
                asked.principal_attributes.groups = match i % 3 {
                    0 => vec!["contractors".into()],
                    1 => vec!["eng".into(), "guests".into()],
                    _ => vec![],
                };
                asked.principal_attributes.roles =
                    if i % 4 == 0 { vec!["reader".into(), "writer".into()] } else { vec!["writer".into()] };
                asked.tool.tags = match i % 3 {
                    0 => vec!["internal".into(), "legacy".into()],
                    1 => vec!["internal".into()],
                    _ => vec![],
                };
                asked.tool.owner = if i % 2 == 0 { "nobody@example.com".into() } else { "tools@example.com".into() };
                asked.task = if i % 5 == 0 { "t-stopped".into() } else { "t1".into() };
                asked.task_total.denials = (i % 6) as u64;
                asked.task_total.mints = (i % 7) as u64;
                asked.task_total.bytes_sent = if i % 2 == 0 { 1_048_000 } else { 0 };
                asked.invocation.bytes_sent = (i as u64) * 20_000;
                asked.invocation.bytes_received = (i as u64) * 7_000;
                asked.input.size = (i as u64) * 150;
                asked.approved = i % 4 == 1;
                queries.push(asked);
            }
        }
    }
    // Counters at Cedar's limit: the sums overflow, an error only Cedar names.
    let mut overflowing = query("github-issues", http("POST", u64::MAX));
    overflowing.task_total.bytes_sent = u64::MAX;
    queries.push(overflowing);
    queries
}

/// The native evaluation (`native.rs`) answers as Cedar does, for every
/// slice of several policy sets and many queries; a policy using what it
/// does not compile leaves its slices to Cedar.
#[test]
fn the_native_evaluation_decides_as_cedar_does() {
    let hundred: String = (0..20)
        .map(|tool| {
            format!(
                "@id(\"t{tool}-writer\") forbid (principal, action == Action::\"http\", resource in Tool::\"tool-{tool}\")\n\
                 when {{ context.request.method == \"POST\" }} unless {{ principal.roles.contains(\"writer-{tool}\") || principal.groups.contains(\"admins\") }};\n\
                 @id(\"t{tool}-budget\") forbid (principal, action == Action::\"http\", resource in Tool::\"tool-{tool}\")\n\
                 when {{ context.task_total.bytes_sent + context.request.body.size > {budget} || context.invocation.requests >= 50 }};\n",
                budget = 1_000_000 + tool * 1000
            )
        })
        .collect();
    let sets = [
        (examples(), PolicyMode::Ceiling),
        (examples(), PolicyMode::Strict),
        (vec![source("every.cedar", EVERY_CONSTRUCT)], PolicyMode::Ceiling),
        (vec![source("every.cedar", EVERY_CONSTRUCT)], PolicyMode::Strict),
        (vec![source("hundred.cedar", &hundred)], PolicyMode::Ceiling),
    ];
    let mut answered = 0;
    let mut left_to_cedar = 0;
    for (sources, mode) in sets {
        let policies = RequestPolicies::load(&sources, mode).unwrap();
        for asked in many_queries() {
            let slice = policies.slice(asked.action.name(), &asked.tool.name);
            let cedar = cedar_outcome(slice, &asked).unwrap();
            match slice.native.as_ref().and_then(|native| native.decide(&asked)) {
                Some(answer) => {
                    answered += 1;
                    assert!(cedar.errors.is_empty(), "Cedar erred where the native path answered: {asked:?}");
                    assert_eq!((answer.allow, &answer.determining), (cedar.allow, &cedar.determining), "{asked:?}");
                }
                None => left_to_cedar += 1,
            }
        }
    }
    // Not vacuous: most decisions are answered natively, and some are not
    // (the `like` policy, the overflow).
    assert!(answered > 300 && left_to_cedar > 20, "{answered} answered, {left_to_cedar} left to Cedar");
    // The policy with `like` keeps its action's slices with Cedar; the others compile.
    let every = RequestPolicies::load(&[source("every.cedar", EVERY_CONSTRUCT)], PolicyMode::Ceiling).unwrap();
    assert!(every.slice("credential", "x").native.is_none());
    assert!(every.slice("call", "x").native.is_some() && every.slice("http", "github-issues").native.is_some());
    assert!(every.slice("socket", "x").native.is_some());
}

/// A query of `action` in which every attribute has a value no other has.
fn distinct_query(action: &str) -> PolicyQuery {
    let action = match action {
        "call" => PolicyAction::Call,
        "http" => PolicyAction::Http {
            method: "PATCH".into(),
            scheme: "https".into(),
            host: "h-host".into(),
            port: 23,
            path: "/p-path".into(),
            query: Digest { size: 24, sha256: "q-sha".into() },
            body: Digest { size: 25, sha256: "b-sha".into() },
        },
        "credential" => PolicyAction::Credential {
            name: "c-name".into(),
            provider: "c-provider".into(),
            audience: "c-audience".into(),
            scopes: vec!["c-scope".into()],
            lifetime_seconds: 26,
            exposure: "c-exposure".into(),
        },
        _ => PolicyAction::Socket {
            operation: "tcp_connect".into(),
            protocol: "tcp".into(),
            ip: std::net::Ipv4Addr::new(127, 0, 0, 9).into(),
            port: 27,
        },
    };
    PolicyQuery {
        principal: "p-name".into(),
        principal_attributes: PrincipalAttributes {
            roles: vec!["r-role".into()],
            groups: vec!["g-group".into()],
            scopes: vec!["s-scope".into()],
        },
        tool: ToolFacts { name: "t-tool".into(), owner: "o-owner".into(), tags: vec!["t-tag".into()] },
        task: "k-task".into(),
        workload: "w-workload".into(),
        task_age_seconds: 11,
        time: datetime!(2026-12-01 10:07 UTC),
        invocation: Counters { requests: 12, bytes_sent: 13, bytes_received: 14, mints: 15, denials: 16 },
        task_total: Counters { requests: 17, bytes_sent: 18, bytes_received: 19, mints: 20, denials: 21 },
        input: Digest { size: 22, sha256: "i-sha".into() },
        approved: true,
        action,
        task_entities: None,
    }
}

/// Every attribute the native evaluation reads is the one Cedar sees: for
/// each, a policy per value of a query whose values all differ, comparing
/// the attribute with it, and exactly the right one is satisfied, by both.
#[test]
fn every_attribute_the_native_evaluation_reads_is_the_one_cedar_sees() {
    let counters = ["requests", "bytes_sent", "bytes_received", "mints", "denials"];
    let mut common: Vec<String> = [
        "principal.name",
        "principal.roles",
        "principal.groups",
        "principal.scopes",
        "context.time.unix",
        "context.time.hour",
        "context.time.minute",
        "context.time.weekday",
        "context.task.id",
        "context.task.workload",
        "context.task_age_seconds",
        "context.input.size",
        "context.input.sha256",
        "context.approved",
    ]
    .map(str::to_owned)
    .to_vec();
    for record in ["invocation", "task_total"] {
        common.extend(counters.iter().map(|counter| format!("context.{record}.{counter}")));
    }
    let per_action: [(&str, &[&str]); 4] = [
        ("call", &["resource.name", "resource.owner", "resource.tags"]),
        (
            "http",
            &[
                "resource.url",
                "resource.scheme",
                "resource.host",
                "resource.port",
                "resource.path",
                "context.request.method",
                "context.request.scheme",
                "context.request.host",
                "context.request.port",
                "context.request.path",
                "context.request.query.size",
                "context.request.query.sha256",
                "context.request.body.size",
                "context.request.body.sha256",
            ],
        ),
        (
            "credential",
            &[
                "resource.name",
                "resource.provider",
                "resource.audience",
                "context.credential.name",
                "context.credential.provider",
                "context.credential.audience",
                "context.credential.scopes",
                "context.credential.lifetime_seconds",
                "context.credential.exposure",
            ],
        ),
        (
            "socket",
            &[
                "resource.ip",
                "resource.port",
                "resource.protocol",
                "context.socket.operation",
                "context.socket.protocol",
                "context.socket.ip",
                "context.socket.port",
            ],
        ),
    ];
    let texts = [
        "p-name",
        "r-role",
        "g-group",
        "s-scope",
        "t-tool",
        "o-owner",
        "t-tag",
        "k-task",
        "w-workload",
        "i-sha",
        "PATCH",
        "https",
        "h-host",
        "/p-path",
        "q-sha",
        "b-sha",
        "https://h-host:23/p-path",
        "c-name",
        "c-provider",
        "c-audience",
        "c-scope",
        "c-exposure",
        "tcp_connect",
        "tcp",
        "127.0.0.9",
    ];
    let unix = datetime!(2026-12-01 10:07 UTC).unix_timestamp();
    let longs: Vec<i64> = (2..=27).chain([unix]).collect();
    // Each attribute's literals: strings, longs or booleans, whichever its type takes.
    let literals = [
        texts.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>(),
        longs.iter().map(ToString::to_string).collect(),
        vec!["true".to_owned(), "false".to_owned()],
    ];
    let mut checked = 0;
    for (action, own) in per_action {
        let asked = distinct_query(action);
        for path in common.iter().map(String::as_str).chain(own.iter().copied()) {
            let set = |literal: &str, test: &str| match test {
                "contains" => format!("{path}.contains({literal})"),
                _ => format!("{path} == {literal}"),
            };
            let policies = ["==", "contains"]
                .iter()
                .flat_map(|test| literals.iter().map(move |kind| (*test, kind)))
                .find_map(|(test, kind)| {
                    let text: String = kind
                        .iter()
                        .enumerate()
                        .map(|(n, literal)| {
                            format!(
                                "@id(\"{n}\") permit (principal, action == Action::\"{action}\", resource) when {{ {} }};\n",
                                set(literal, test)
                            )
                        })
                        .collect();
                    RequestPolicies::load(&[source("attribute.cedar", &text)], PolicyMode::Strict)
                        .ok()
                        .map(|policies| (policies, kind))
                })
                .unwrap_or_else(|| panic!("no literal fits {path} for {action}"));
            let (policies, kind) = policies;
            let slice = policies.slice(action, &asked.tool.name);
            let answer = slice.native.as_ref().expect("compiled").decide(&asked).expect("answered");
            let cedar = cedar_outcome(slice, &asked).unwrap();
            assert_eq!((answer.allow, &answer.determining), (cedar.allow, &cedar.determining), "{action} {path}");
            let matched: Vec<&String> = answer.determining.iter().map(|n| &kind[n.parse::<usize>().unwrap()]).collect();
            assert_eq!(matched.len(), 1, "{action} {path}: {matched:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 4 * common.len() + 3 + 14 + 9 + 7);
}
