//! `github-issues`: lists and creates issues through GitHub's REST API.
//!
//! It holds no token. Its manifest binds a credential to the API's egress
//! rule, and the host adds `Authorization` to each request on the way out;
//! this code only builds requests and reads answers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use toolcell_sdk::ToolError;
use toolcell_sdk::http::Request;

#[derive(Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum Input {
    /// List a repository's issues.
    List {
        /// Repository owner.
        owner: String,
        /// Repository name.
        repo: String,
        /// `open` (default), `closed` or `all`.
        #[serde(default = "open")]
        state: String,
        /// The API's base URL (default `https://api.github.com`; GitHub Enterprise differs).
        #[serde(default = "github")]
        api: String,
    },
    /// Open an issue.
    Create {
        /// Repository owner.
        owner: String,
        /// Repository name.
        repo: String,
        /// The issue's title.
        title: String,
        /// The issue's body (Markdown).
        #[serde(default)]
        body: String,
        /// The API's base URL (default `https://api.github.com`).
        #[serde(default = "github")]
        api: String,
    },
}

fn open() -> String {
    "open".to_owned()
}

fn github() -> String {
    "https://api.github.com".to_owned()
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Issue {
    /// Issue number.
    number: u64,
    /// Title.
    title: String,
    /// `open` or `closed`.
    state: String,
    /// Its page.
    html_url: String,
}

#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
enum Output {
    /// The issues listed.
    Listed { issues: Vec<Issue> },
    /// The issue opened.
    Created { issue: Issue },
}

/// Checks an owner or repo name, so it cannot rewrite the request's path.
fn segment<'a>(field: &str, value: &'a str) -> Result<&'a str, ToolError> {
    let fine = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if fine && value != "." && value != ".." {
        Ok(value)
    } else {
        Err(ToolError::InvalidInput(format!("field `{field}`: `{value}` is not a GitHub name")))
    }
}

/// Sends a request to the GitHub API and reads a JSON answer, turning API
/// errors into tool errors that carry GitHub's message.
fn call<T: for<'de> Deserialize<'de>>(request: Request, expected: u16) -> Result<T, ToolError> {
    let response = request
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .header("user-agent", "toolcell-github-issues")
        .max_body(4 << 20)
        .send()?;
    if response.status != expected {
        let message = serde_json::from_slice::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&response.body).chars().take(200).collect());
        return Err(match response.status {
            401 | 403 | 404 => ToolError::Denied(format!("GitHub answered {}: {message}", response.status)),
            _ => ToolError::Upstream(format!("GitHub answered {}: {message}", response.status)),
        });
    }
    serde_json::from_slice(&response.body).map_err(|e| ToolError::Upstream(format!("GitHub's answer: {e}")))
}

/// Lists or opens issues in a GitHub repository, with a credential the host injects.
#[toolcell_sdk::tool]
fn github_issues(input: Input) -> Result<Output, ToolError> {
    match input {
        Input::List { owner, repo, state, api } => {
            if !["open", "closed", "all"].contains(&state.as_str()) {
                return Err(ToolError::InvalidInput(format!("field `state`: `{state}` is not open, closed or all")));
            }
            let url = format!(
                "{}/repos/{}/{}/issues?state={state}",
                api.trim_end_matches('/'),
                segment("owner", &owner)?,
                segment("repo", &repo)?
            );
            Ok(Output::Listed { issues: call(Request::get(&url), 200)? })
        }
        Input::Create { owner, repo, title, body, api } => {
            if title.trim().is_empty() {
                return Err(ToolError::InvalidInput("field `title`: must not be empty".into()));
            }
            let url = format!(
                "{}/repos/{}/{}/issues",
                api.trim_end_matches('/'),
                segment("owner", &owner)?,
                segment("repo", &repo)?
            );
            let payload = serde_json::json!({ "title": title, "body": body }).to_string();
            Ok(Output::Created { issue: call(Request::post(&url).json(&payload), 201)? })
        }
    }
}
