//! Governance end to end, on the example tools (built by the test command
//! before the tests run): the audit trail that running them leaves verifies,
//! shows as a timeline and breaks visibly when tampered with; access review
//! finds exactly what was granted and not used, and its suggestions still
//! run the tools; blast radius and its diff; an overdue review.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{recording_api, text};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Governed {
    state: tempfile::TempDir,
}

impl Governed {
    fn new() -> Governed {
        Governed { state: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.state.path().join(name)
    }

    fn audit(&self) -> PathBuf {
        self.path("toolcell/audit.jsonl")
    }

    fn toolcell(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_toolcell"))
            .args(args)
            .current_dir(repo())
            .env("XDG_STATE_HOME", self.state.path())
            .env("XDG_CACHE_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache"))
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }
}

#[track_caller]
fn code(output: &Output, expected: i32) -> String {
    let out = text(&output.stdout);
    assert_eq!(output.status.code(), Some(expected), "stdout: {out}\nstderr: {}", text(&output.stderr));
    out
}

/// An http-get manifest for a loopback API: GET and POST on /whoami (only
/// GET is used), a second rule never matched, and an issuer token injected.
fn http_get_manifest(governed: &Governed, port: u16) -> (PathBuf, PathBuf) {
    let config = governed.path("toolcell.toml");
    std::fs::write(
        &config,
        "hosts = { \"api.review.test\" = [\"127.0.0.1\"] }\nplaintext_credential_hosts = [\"api.review.test\"]\n",
    )
    .unwrap();
    let manifest = governed.path("http-get.toml");
    let component = repo().join("examples/target/wasm32-wasip2/release/http_get.wasm");
    assert!(component.exists(), "the example tools are built by the test command (scripts/test) first");
    std::fs::write(
        &manifest,
        format!(
            r#"# http-get against a loopback API, for access review.
[tool]
name = "http-get"
owner = "reviewers@example.com"
purpose = "Read one loopback endpoint"
review_by = 2099-12-31
component = "{component}"

[[egress]]
url = "http://api.review.test:{port}/whoami"
methods = ["GET", "POST"]
addresses = ["127.0.0.1"]

[[egress]]
url = "http://api.review.test:{port}/admin/*"
methods = ["DELETE"]
addresses = ["127.0.0.1"]

[[credentials]]
name = "api"
provider = "issuer"
scopes = ["whoami:read"]
audience = "http://api.review.test"
max_ttl = "1m"
inject = {{ egress = "http://api.review.test:{port}/whoami", header = "Authorization", format = "Bearer {{token}}" }}
"#,
            component = component.display()
        ),
    )
    .unwrap();
    (config, manifest)
}

#[test]
fn the_examples_leave_a_trail_that_verifies_shows_reviews_and_breaks_visibly() {
    let governed = Governed::new();
    let (port, _) = recording_api();
    let (config, manifest) = http_get_manifest(&governed, port);
    let (config, manifest) = (config.to_str().unwrap(), manifest.to_str().unwrap());
    code(&governed.toolcell(&["run", "--manifest", "policies/word-count.toml", "--input", r#"{"text":"a b"}"#]), 0);
    code(&governed.toolcell(&["run", "--manifest", "policies/file-stats.toml", "--", "/docs"]), 0);
    let url = format!(r#"{{"url":"http://api.review.test:{port}/whoami"}}"#);
    code(&governed.toolcell(&["--config", config, "run", "--manifest", manifest, "--input", &url]), 0);

    // Intact, signed by the key in the state directory.
    let verified = code(&governed.toolcell(&["audit", "verify"]), 0);
    assert!(verified.contains("intact"), "{verified}");
    let key = code(&governed.toolcell(&["audit", "key"]), 0);
    assert!(key.trim().starts_with("ed25519:"), "{key}");
    std::fs::write(governed.path("audit.pub"), &key).unwrap();
    let audit = governed.audit();
    let audit_arg = audit.to_str().unwrap();
    code(&governed.toolcell(&["audit", "verify", "--key", governed.path("audit.pub").to_str().unwrap(), audit_arg]), 0);

    // The timeline, filtered.
    let shown =
        code(&governed.toolcell(&["audit", "show", "--tool", "http-get", "--event", "egress,credential_minted"]), 0);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 2, "{shown}");
    assert!(lines.iter().any(|l| l.contains("egress") && l.contains("allowed GET api.review.test/whoami")), "{shown}");
    assert!(lines.iter().all(|l| l.contains("http-get")), "{shown}");
    let json = code(&governed.toolcell(&["audit", "show", "--event", "task_closed", "--json"]), 0);
    assert_eq!(json.lines().count(), 3, "{json}");
    assert!(json.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));

    // Access review: exactly the POST and the second rule are unused; the
    // directory of file-stats cannot be judged.
    let manifests = ["policies/word-count.toml", "policies/file-stats.toml", manifest];
    let mut args = vec!["review", "--format", "json", "--audit", audit_arg];
    args.extend(manifests);
    let review: serde_json::Value = serde_json::from_str(&code(&governed.toolcell(&args), 0)).unwrap();
    let tools = review["tools"].as_array().unwrap();
    let unused = |tool: usize| -> Vec<(String, String)> {
        tools[tool]["unused"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| (u["kind"].as_str().unwrap().to_owned(), u["item"].as_str().unwrap().to_owned()))
            .collect()
    };
    assert_eq!(unused(0), []);
    assert_eq!(unused(1), []);
    assert!(tools[1]["not_recorded"][0].as_str().unwrap().contains("/docs"), "{review}");
    assert_eq!(
        unused(2),
        [
            ("method".to_owned(), format!("POST on http://api.review.test:{port}/whoami")),
            ("egress_rule".to_owned(), format!("http://api.review.test:{port}/admin/*")),
        ]
    );
    assert_eq!(review["partial"], false);

    // The suggestions load, drop what was unused, and still run the tool.
    let suggested = governed.path("suggested");
    let mut args = vec!["review", "--audit", audit_arg, "--write-suggestions", suggested.to_str().unwrap()];
    args.extend(manifests);
    code(&governed.toolcell(&args), 0);
    let narrowed = std::fs::read_to_string(suggested.join("http-get.toml")).unwrap();
    assert!(!narrowed.contains("/admin/*\"\n") && !narrowed.contains("\"POST\""), "{narrowed}");
    assert!(narrowed.contains("# Dropped:"), "{narrowed}");
    let again = suggested.join("http-get.toml");
    code(&governed.toolcell(&["--config", config, "run", "--manifest", again.to_str().unwrap(), "--input", &url]), 0);
    let file_stats = suggested.join("file-stats.toml");
    code(&governed.toolcell(&["run", "--manifest", file_stats.to_str().unwrap(), "--", "/docs"]), 0);
    code(&governed.toolcell(&["policy", "check", suggested.to_str().unwrap()]), 0);

    // Tampering: a line deleted from the middle.
    let original = std::fs::read_to_string(&audit).unwrap();
    let mut lines: Vec<&str> = original.lines().collect();
    lines.remove(3);
    std::fs::write(&audit, lines.join("\n") + "\n").unwrap();
    let broken = code(&governed.toolcell(&["audit", "verify"]), 1);
    assert!(broken.contains("BROKEN (deleted)") && broken.contains("audit.jsonl:4"), "{broken}");
    // A review of a damaged trail still reads (every line is an event), but
    // a line that is not one stops it, naming the place.
    std::fs::write(&audit, original.replacen("\"event\":\"task_opened\"", "\"event\":\"task_teleported\"", 1)).unwrap();
    let mut args = vec!["review", "--audit", audit_arg];
    args.extend(manifests);
    let refused = governed.toolcell(&args);
    assert_eq!(refused.status.code(), Some(125));
    assert!(
        text(&refused.stderr).contains("audit.jsonl:1: unknown event `task_teleported`"),
        "{}",
        text(&refused.stderr)
    );
    args.push("--partial");
    let partial = code(&governed.toolcell(&args), 0);
    assert!(partial.starts_with("PARTIAL: 1 audit line(s)"), "{partial}");
}

#[test]
fn blast_radius_scores_the_examples_and_a_diff_fails_on_widening() {
    let governed = Governed::new();
    let json: serde_json::Value = serde_json::from_str(&code(
        &governed.toolcell(&["blast-radius", "--policies", "policies", "--format", "json"]),
        0,
    ))
    .unwrap();
    let scores: std::collections::BTreeMap<&str, u64> = json["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["tool"].as_str().unwrap(), t["score"]["total"].as_u64().unwrap()))
        .collect();
    // By hand from the scoring rules (see runtime/src/reports/tests.rs for each part).
    let expected = [
        ("file-stats", 2),
        ("fs-search", 2),
        ("github-issues", 16),
        ("http-fetch-example", 2),
        ("http-get", 2),
        ("word-count", 0),
        ("word-count-js", 0),
        ("word-count-py", 0),
    ];
    assert_eq!(scores, expected.into_iter().collect());
    let dot = code(&governed.toolcell(&["blast-radius", "--policies", "policies", "--format", "dot"]), 0);
    assert!(
        dot.starts_with("digraph blast_radius {") && dot.contains("\"t:github-issues\" -> \"h:api.github.com:443\""),
        "{dot}"
    );

    // A copy of the policies, then a change that widens (POST on http-get) and one that narrows.
    let old = governed.path("old");
    std::fs::create_dir_all(&old).unwrap();
    for entry in std::fs::read_dir(repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("../examples", &repo().join("examples").display().to_string());
        std::fs::write(old.join(path.file_name().unwrap()), text).unwrap();
    }
    let new = governed.path("new");
    std::fs::create_dir_all(&new).unwrap();
    for entry in std::fs::read_dir(&old).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, new.join(path.file_name().unwrap())).unwrap();
    }
    let http_get = new.join("http-get.toml");
    let text = std::fs::read_to_string(&http_get).unwrap();
    std::fs::write(&http_get, text.replace(r#"methods = ["GET"]"#, r#"methods = ["GET", "DELETE"]"#)).unwrap();
    let (old, new) = (old.to_str().unwrap(), new.to_str().unwrap());
    let widened = code(&governed.toolcell(&["blast-radius", "--diff", old, new]), 1);
    assert!(widened.contains("+ http-get: egress DELETE https://api.github.com/*"), "{widened}");
    let narrowed = code(&governed.toolcell(&["blast-radius", "--diff", new, old]), 0);
    assert!(narrowed.contains("- http-get: egress DELETE https://api.github.com/* no longer reachable"), "{narrowed}");
    code(&governed.toolcell(&["blast-radius", "--diff", old, old]), 0);
}

#[test]
fn a_tool_past_its_review_date_warns_or_is_refused_as_the_config_says() {
    let governed = Governed::new();
    let manifest = governed.path("late.toml");
    let late = std::fs::read_to_string(repo().join("policies/word-count.toml"))
        .unwrap()
        .replace("review_by = 2027-06-30", "review_by = 2020-01-31")
        .replace("../examples", &repo().join("examples").display().to_string());
    std::fs::write(&manifest, late).unwrap();
    let manifest = manifest.to_str().unwrap();

    let warned = governed.toolcell(&["run", "--manifest", manifest, "--input", r#"{"text":"x"}"#]);
    code(&warned, 0);
    assert!(text(&warned.stderr).contains("due for access review by 2020-01-31"), "{}", text(&warned.stderr));
    let audit = std::fs::read_to_string(governed.audit()).unwrap();
    assert!(
        audit.contains(
            r#""event":"review_overdue","owner":"tools-team@example.com","review_by":"2020-01-31","action":"warn""#
        ),
        "{audit}"
    );

    let config = governed.path("refuse.toml");
    std::fs::write(&config, "[review]\noverdue = \"refuse\"\n").unwrap();
    let refused =
        governed.toolcell(&["--config", config.to_str().unwrap(), "run", "--manifest", manifest, "--input", "{}"]);
    assert_eq!(refused.status.code(), Some(125));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("tools-team@example.com") && stderr.contains("2020-01-31"), "{stderr}");
    assert!(std::fs::read_to_string(governed.audit()).unwrap().contains(r#""event":"task_refused""#));
}
