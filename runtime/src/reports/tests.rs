//! Reports against the example manifests and policies in `policies/`, with
//! expectations computed by hand from `SCORING`.

use std::path::{Path, PathBuf};

use super::*;
use crate::config::RuntimeConfig;
use crate::grant::Narrowing;
use crate::manifest::Manifest;
use crate::request_policy::{PolicyMode, PrincipalAttributes, RequestPolicies};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn example(name: &str) -> Manifest {
    Manifest::load(&examples().join(format!("{name}.toml"))).unwrap()
}

fn policies() -> RequestPolicies {
    RequestPolicies::load_dir(&examples(), PolicyMode::Ceiling).unwrap()
}

/// A config that knows alice, a writer.
fn config() -> RuntimeConfig {
    let mut config = RuntimeConfig::default();
    config
        .principals
        .insert("alice".into(), PrincipalAttributes { roles: vec!["writer".into()], ..Default::default() });
    config
}

fn reach(name: &str, principals: &[&str], narrowing: Option<&Narrowing>) -> ToolReach {
    let (policies, config) = (policies(), config());
    let inputs = ReachInputs {
        policies: &policies,
        config: &config,
        kills: &[],
        principals: principals.iter().map(|p| p.to_string()).collect(),
    };
    tool_reach(&example(name), narrowing, &inputs).unwrap()
}

#[test]
fn every_example_scores_what_its_manifest_and_the_policies_allow() {
    // Nothing granted: nothing reachable.
    for name in ["word-count", "word-count-js", "word-count-py"] {
        let tool = reach(name, &["bob"], None);
        assert_eq!(tool.score.total, 0, "{name}: {:?}", tool.score);
    }
    // One read-only directory: 2.
    for name in ["file-stats", "fs-search"] {
        let tool = reach(name, &["bob"], None);
        assert_eq!(tool.score.parts, [("filesystem", 2)].into(), "{name}");
        assert_eq!(tool.filesystem[0].mode, "read-only");
    }
    // GET on one host: 2.
    let http_get = reach("http-get", &["bob"], None);
    assert_eq!(http_get.score.total, 2);
    assert_eq!(http_get.egress[0].methods["GET"].outcome, Outcome::Allowed);
    // GET (2) reachable; POST forbidden for anyone without the writer role
    // (post-needs-writer-role), in every sample: 0.
    let fetch = reach("http-fetch-example", &["bob"], None);
    assert_eq!(fetch.score.total, 2, "{:?}", fetch.egress);
    let post = &fetch.egress[1].methods["POST"];
    assert_eq!(
        (post.outcome, post.forbidden_by.as_slice()),
        (Outcome::Forbidden, &["post-needs-writer-role".to_owned()][..])
    );
    // ...while for alice (a writer) the POST is reachable: +5.
    assert_eq!(reach("http-fetch-example", &["alice"], None).score.total, 7);

    // github-issues for bob: GET (2); POST forbidden; the static token: 4 +
    // 0 scopes + 10 (a static secret) = 14, injected. 16.
    let github = reach("github-issues", &["bob"], None);
    assert_eq!(github.score.parts, [("credentials", 14), ("egress", 2)].into());
    let token = &github.credentials[0];
    assert_eq!((token.longest_life_seconds, token.bounded_by, token.exposure), (None, "rotation", "inject"));
    assert_eq!(github.egress[0].injected, ["github"]);
    // For alice: the POST needs approval on a weekday (approve-new-issues)
    // and is forbidden on a weekend (github-writes-in-business-hours):
    // conditional, full points: 2 + 5.
    let github = reach("github-issues", &["alice"], None);
    let post = &github.egress[0].methods["POST"];
    assert_eq!(post.outcome, Outcome::Conditional);
    assert_eq!(post.forbidden_by, ["github-writes-in-business-hours"]);
    assert_eq!(post.approval.as_deref(), Some("opening an issue is visible to customers"));
    assert_eq!(github.score.total, 21);
    // With no principal named: every configured one and anyone else.
    assert_eq!(reach("github-issues", &[], None).egress[0].methods["POST"].outcome, Outcome::Conditional);
}

#[test]
fn a_narrowing_shrinks_reach_and_one_that_widens_is_refused() {
    let narrowing = Narrowing::from_json(&serde_json::json!({ "egress": [], "credentials": [] })).unwrap();
    let tool = reach("github-issues", &["alice"], Some(&narrowing));
    assert!(tool.egress.is_empty() && tool.credentials.is_empty());
    assert_eq!(tool.score.total, 0);

    let (policies, config) = (policies(), config());
    let inputs = ReachInputs { policies: &policies, config: &config, kills: &[], principals: vec!["alice".into()] };
    let wider = Narrowing::from_json(&serde_json::json!({ "egress": ["https://evil.example/*"] })).unwrap();
    let error = tool_reach(&example("github-issues"), Some(&wider), &inputs).unwrap_err();
    assert!(error.to_string().contains("https://evil.example/*"), "{error}");
}

#[test]
fn a_principal_reaches_the_union_of_its_tools() {
    let tools: Vec<ToolReach> =
        ["github-issues", "http-get", "file-stats"].iter().map(|name| reach(name, &["alice"], None)).collect();
    let alice = principal_reach("alice", &tools);
    assert_eq!(alice.tools, ["github-issues", "http-get", "file-stats"]);
    assert_eq!(alice.score, 21 + 2 + 2);
    assert!(alice.egress.contains("GET https://api.github.com:443/*"), "{:?}", alice.egress);
    assert!(alice.egress.contains("POST https://api.github.com:443/repos/*/issues"), "{:?}", alice.egress);
    assert_eq!(alice.credentials.len(), 1);
}

#[test]
fn a_killed_tool_reaches_nothing_while_the_kill_lasts() {
    let (policies, config) = (policies(), config());
    let kill = crate::oversight::Kill::new(crate::oversight::KillTarget::Tool("http-get".into()), None, "ops", None);
    let kills = [kill];
    let inputs = ReachInputs { policies: &policies, config: &config, kills: &kills, principals: vec!["bob".into()] };
    let tool = tool_reach(&example("http-get"), None, &inputs).unwrap();
    assert!(tool.killed.is_some());
    assert_eq!(tool.score.total, 0);
}

fn with(name: &str, edit: impl FnOnce(&str) -> String) -> ToolReach {
    let path = examples().join(format!("{name}.toml"));
    let text = edit(&std::fs::read_to_string(&path).unwrap());
    let manifest = Manifest::parse(&text, &path).unwrap();
    let (policies, config) = (policies(), config());
    let inputs = ReachInputs { policies: &policies, config: &config, kills: &[], principals: vec!["alice".into()] };
    tool_reach(&manifest, None, &inputs).unwrap()
}

const ISSUER_CREDENTIAL: &str = r#"
[[credentials]]
name = "api"
provider = "issuer"
audience = "https://api.github.com"
scopes = ["issues:read"]
max_ttl = "60s"
inject = { egress = "https://api.github.com/*", header = "Authorization", format = "Bearer {token}" }
"#;

#[test]
fn a_diff_flags_what_widens_and_passes_what_narrows() {
    let before = with("http-get", |t| t.to_owned() + ISSUER_CREDENTIAL);
    let same = diff_reach(std::slice::from_ref(&before), std::slice::from_ref(&before));
    assert!(same.is_empty(), "{same:?}");

    // A widened egress rule: POST added.
    let wider =
        with("http-get", |t| t.replace(r#"methods = ["GET"]"#, r#"methods = ["GET", "POST"]"#) + ISSUER_CREDENTIAL);
    let changes = diff_reach(std::slice::from_ref(&before), &[wider]);
    assert!(changes.iter().any(|c| c.widens && c.what.contains("egress POST https://api.github.com/*")), "{changes:?}");

    // A rule on a wider path: the old `/*` covers `/repos/*`, not the other way round.
    let narrower_path = with("http-get", |t| t.replace("https://api.github.com/*", "https://api.github.com/repos/*"));
    let changes = diff_reach(&[narrower_path], &[with("http-get", str::to_owned)]);
    assert!(changes.iter().any(|c| c.widens && c.what.contains("GET https://api.github.com/*")), "{changes:?}");

    // An added scope.
    let scoped = with("http-get", |t| {
        t.to_owned() + &ISSUER_CREDENTIAL.replace(r#"["issues:read"]"#, r#"["issues:read", "repo:admin"]"#)
    });
    let changes = diff_reach(std::slice::from_ref(&before), &[scoped]);
    assert!(changes.iter().any(|c| c.widens && c.what == "credential api: scope repo:admin added"), "{changes:?}");

    // A longer max_ttl (60s -> 120s, under the operator's 300s and the call's 30s... the call bounds it).
    let longer = with("http-get", |t| {
        t.replace(r#"timeout = "30s""#, r#"timeout = "300s""#) + &ISSUER_CREDENTIAL.replace(r#""60s""#, r#""120s""#)
    });
    let changes = diff_reach(std::slice::from_ref(&before), &[longer]);
    assert!(changes.iter().any(|c| c.widens && c.what == "credential api: longest life 120s (was 30s)"), "{changes:?}");

    // A narrowing: fewer methods, a shorter life, a scope dropped — nothing widens.
    let narrowed = with("http-get", |t| {
        t.to_owned() + &ISSUER_CREDENTIAL.replace(r#""60s""#, r#""10s""#).replace(r#"["issues:read"]"#, "[]")
    });
    let changes = diff_reach(std::slice::from_ref(&before), &[narrowed]);
    assert!(!changes.is_empty() && changes.iter().all(|c| !c.widens), "{changes:?}");
}

fn trail_file(dir: &Path, lines: &[serde_json::Value]) -> PathBuf {
    let path = dir.join("audit.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn date(year: i32, month: u8, day: u8) -> time::Date {
    time::Date::from_calendar_date(year, time::Month::try_from(month).unwrap(), day).unwrap()
}

fn at(second: u32) -> String {
    format!("2026-12-01T10:00:{second:02}Z")
}

#[test]
fn exposure_is_measured_from_mint_to_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let expires =
        time::OffsetDateTime::parse(&at(0), &time::format_description::well_known::Rfc3339).unwrap().unix_timestamp()
            + 60;
    let path = trail_file(
        dir.path(),
        &[
            serde_json::json!({"time": at(0), "tool": "t", "event": "credential_minted", "credential": "api", "id": "a", "expires_at": expires}),
            serde_json::json!({"time": at(1), "tool": "t", "event": "credential_revoked", "credential": "api", "id": "a", "outcome": "deny_listed"}),
            serde_json::json!({"time": at(2), "tool": "t", "event": "credential_minted", "credential": "api", "id": "b", "expires_at": expires}),
            serde_json::json!({"time": at(5), "tool": "t", "event": "credential_revoked", "credential": "api", "id": "b", "outcome": "revoked"}),
        ],
    );
    let measured = &measure_exposure(&[path]).unwrap()["t"]["api"];
    assert_eq!((measured.mints, measured.revoked), (2, 2));
    assert_eq!((measured.window_ms_p50, measured.window_ms_max), (Some(3000), Some(3000)));
    // a was deny-listed with 59 s left; b was revoked at the server: 0.
    assert_eq!((measured.residual_s_p50, measured.residual_s_max), (Some(59), Some(59)));
}

#[test]
fn bad_audit_input_is_named_by_file_and_line_and_partial_reading_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let good = serde_json::json!({"time": at(0), "tool": "t", "event": "invocation_started"});
    let path = trail_file(dir.path(), &[good.clone(), serde_json::json!({"time": at(1), "event": "teleported"})]);
    let error = read_trail(&[&path]).unwrap_err().to_string();
    assert!(error.contains("audit.jsonl:2") && error.contains("unknown event `teleported`"), "{error}");
    let partial = read_trail_partially(&[&path]).unwrap();
    assert_eq!((partial.records.len(), partial.skipped.len()), (1, 1));

    std::fs::write(&path, format!("{good}\n{{\"time\": \"x\"")).unwrap();
    let error = read_trail(&[&path]).unwrap_err().to_string();
    assert!(error.contains("audit.jsonl:2") && error.contains("cut short"), "{error}");
    std::fs::write(&path, format!("{good}\nnot json\n{good}\n")).unwrap();
    let error = read_trail(&[&path]).unwrap_err().to_string();
    assert!(error.contains("audit.jsonl:2") && error.contains("not JSON"), "{error}");
}

#[test]
fn review_finds_exactly_what_was_granted_and_not_used_and_suggests_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let source = examples().join("http-fetch-example.toml");
    let text = std::fs::read_to_string(&source).unwrap()
        + ISSUER_CREDENTIAL.replace("https://api.github.com/*", "https://api.example.com/v1/*").as_str();
    let text = text.replace(r#"scopes = ["issues:read"]"#, r#"scopes = ["issues:read", "issues:write"]"#);
    let manifest = Manifest::parse(&text, &source).unwrap();
    let event = |second, fields: serde_json::Value| {
        let mut event =
            serde_json::json!({"time": at(second), "task": "t1", "tool": "http-fetch-example", "principal": "alice"});
        event.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        event
    };
    let path = trail_file(
        dir.path(),
        &[
            event(0, serde_json::json!({"event": "invocation_started", "invocation": "i1", "shape": "tool"})),
            event(
                1,
                serde_json::json!({"event": "egress", "decision": "allowed", "rule": "https://api.example.com/v1/*", "method": "GET", "host": "api.example.com", "path": "/v1/x"}),
            ),
            event(
                1,
                serde_json::json!({"event": "credential_minted", "credential": "api", "scopes": ["issues:read"], "id": "j"}),
            ),
            // A denied request is not a use.
            event(
                2,
                serde_json::json!({"event": "egress", "decision": "denied", "method": "POST", "host": "api.example.com", "path": "/v1/reports"}),
            ),
        ],
    );
    let trail = read_trail(&[&path]).unwrap();
    let today = date(2026, 12, 1);
    let reviews = review(std::slice::from_ref(&manifest), &trail, None, today);
    let found: Vec<(&str, &str)> = reviews[0].unused.iter().map(|u| (u.kind, u.item.as_str())).collect();
    assert_eq!(found, [("egress_rule", "https://api.example.com/v1/reports"), ("scope", "issues:write of api")]);
    assert_eq!((reviews[0].calls, reviews[0].last_used.as_deref()), (1, Some(at(0).as_str())));
    assert!(!reviews[0].overdue);
    assert!(review(std::slice::from_ref(&manifest), &trail, None, date(2027, 7, 1))[0].overdue);
    // Nothing in the window: everything unused.
    let later = review(std::slice::from_ref(&manifest), &trail, Some(i64::MAX), today);
    assert_eq!(later[0].unused.len(), 3, "{:?}", later[0].unused);

    let suggested = suggest(&manifest, &text, &reviews[0], "the whole audit trail").unwrap();
    let elsewhere = dir.path().join("suggested/http-fetch-example.toml");
    let narrowed = Manifest::parse(&suggested, &elsewhere).unwrap();
    assert_eq!(narrowed.egress.len(), 1);
    assert_eq!(narrowed.credentials[0].scopes, ["issues:read"]);
    assert_eq!(
        narrowed.component,
        std::path::absolute(&manifest.component).unwrap(),
        "paths resolve where it is written"
    );
    assert!(suggested.contains("egress rule https://api.example.com/v1/reports: never matched"), "{suggested}");
    assert!(suggested.contains("scope issues:write of api: never requested"), "{suggested}");
}

#[test]
fn the_overdue_review_names_the_owner_and_date() {
    let manifest = example("http-get");
    assert!(ReviewOverdue::of(&manifest, date(2027, 6, 30)).is_none());
    let overdue = ReviewOverdue::of(&manifest, date(2027, 7, 1)).unwrap().to_string();
    assert!(overdue.contains("tools-team@example.com") && overdue.contains("2027-06-30"), "{overdue}");
}
