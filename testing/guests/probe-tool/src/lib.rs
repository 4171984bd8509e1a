//! A toolcell tool that does one hostile or ordinary thing, named by the
//! `action` field of its JSON input.

use serde_json::{Value, json};
use toolcell_sdk::{Guest, ToolError, ToolInfo, credentials, log};

struct Probe;

static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Guest for Probe {
    fn describe() -> ToolInfo {
        ToolInfo {
            name: "probe".into(),
            description: "Does one thing the tests ask for.".into(),
            input_schema: json!({
                "type": "object",
                "properties": { "action": { "type": "string" } },
                "required": ["action"]
            })
            .to_string(),
            output_schema: Some(json!({ "type": "object" }).to_string()),
        }
    }

    fn invoke(input: String) -> Result<String, ToolError> {
        let input: Value =
            serde_json::from_str(&input).map_err(|e| ToolError::InvalidInput(format!("not JSON: {e}")))?;
        let field = |name: &str| input.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        let number = |name: &str| input.get(name).and_then(Value::as_u64).unwrap_or_default();
        let output = match field("action").as_str() {
            "echo" => input.clone(),
            // A fresh instance per call starts every static anew, so this
            // always answers 1 under toolcell.
            "count" => json!({ "count": CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 }),
            "read" => match std::fs::read_to_string(field("path")) {
                Ok(text) => json!({ "text": text }),
                Err(error) => return Err(ToolError::Denied(error.to_string())),
            },
            "env" => json!(std::env::vars().collect::<std::collections::BTreeMap<_, _>>()),
            "log" => {
                for i in 0..number("lines") {
                    log::info(&format!("line {i}"));
                }
                json!({ "logged": number("lines") })
            }
            "big-output" => json!({ "data": "y".repeat(number("bytes") as usize) }),
            "spin" => loop {
                std::hint::black_box(0);
            },
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(number("seconds")));
                json!({ "slept": number("seconds") })
            }
            "alloc" => {
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                loop {
                    blocks.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&blocks);
                }
            }
            "http" => {
                let headers: Vec<String> = input["headers"]
                    .as_array()
                    .map(|h| h.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                // Optionally narrow a credential first: the request then carries the narrowed one.
                let acquired = match input.get("acquire") {
                    Some(wanted) => Some(acquire(wanted)?),
                    None => None,
                };
                let mut output = match probe_http::request(&field("method"), &field("url"), &headers) {
                    Ok(response) => json!({
                        "status": response.status,
                        "headers": response.headers,
                        "body": String::from_utf8_lossy(&response.body),
                    }),
                    Err(error) => return Err(ToolError::Upstream(error.to_string())),
                };
                if let Some(credential) = acquired {
                    output["credential"] = credential;
                }
                output
            }
            "acquire" => acquire(&input)?,
            // The SDK's streaming response: the body as it arrives.
            "stream" => {
                let mut response = toolcell_sdk::http::Request::get(&field("url"))
                    .send_streaming()
                    .map_err(|e| ToolError::Upstream(e.to_string()))?;
                let (mut bytes, mut chunks) = (0usize, 0usize);
                while let Some(chunk) = response.next_chunk().map_err(|e| ToolError::Upstream(e.to_string()))? {
                    bytes += chunk.len();
                    chunks += 1;
                }
                json!({ "status": response.status, "bytes": bytes, "chunks": chunks })
            }
            // Everything a tool can look at after the host injected a
            // credential into its request: the tests check none of it holds the value.
            "snoop" => {
                let mut seen = serde_json::Map::new();
                seen.insert("env".into(), json!(std::env::vars().collect::<Vec<_>>()));
                seen.insert("args".into(), json!(std::env::args().collect::<Vec<_>>()));
                if let Ok(credential) = credentials::acquire(&field("name"), &[]) {
                    seen.insert("reveal".into(), json!(format!("{:?}", credential.reveal())));
                }
                let headers = vec![format!("authorization: Bearer guess")];
                match probe_http::request("GET", &field("url"), &headers) {
                    Ok(response) => {
                        seen.insert("status".into(), json!(response.status));
                        seen.insert("headers".into(), json!(response.headers));
                        seen.insert("body".into(), json!(String::from_utf8_lossy(&response.body)));
                    }
                    Err(error) => {
                        seen.insert("error".into(), json!(error.to_string()));
                    }
                }
                Value::Object(seen)
            }
            // Does `do` (an action) `times` times, with `{n}` in its string
            // fields replaced by the round; counts what succeeded and failed.
            // Tests flood the host with it.
            "repeat" => {
                let (mut ok, mut failed) = (0u64, 0u64);
                let mut last_error = String::new();
                for n in 0..number("times") {
                    let round = input["do"].to_string().replace("{n}", &n.to_string());
                    match <Probe as Guest>::invoke(round) {
                        Ok(output) if !output.contains("\"error\"") => ok += 1,
                        Ok(output) => {
                            failed += 1;
                            last_error = output;
                        }
                        Err(error) => {
                            failed += 1;
                            last_error = format!("{error:?}");
                        }
                    }
                }
                json!({ "ok": ok, "failed": failed, "last_error": last_error })
            }
            "panic" => panic!("probe-tool panicked on purpose"),
            "fail" => return Err(ToolError::Failed("asked to fail".into())),
            other => return Err(ToolError::InvalidInput(format!("unknown action `{other}`"))),
        };
        // Then something else in the same call (sleep, panic), so tests can
        // look at what the first action holds while the call still runs.
        if let Some(then) = input.get("then") {
            let _ = <Probe as Guest>::invoke(then.to_string());
        }
        Ok(output.to_string())
    }
}

/// Acquires `{"name", "scopes", "reveal"}` and describes what it got.
fn acquire(wanted: &Value) -> Result<Value, ToolError> {
    let name = wanted["name"].as_str().unwrap_or_default();
    let scopes: Vec<&str> =
        wanted["scopes"].as_array().map(|s| s.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let credential = credentials::acquire(name, &scopes).map_err(|e| match e {
        credentials::Error::Denied(reason) => ToolError::Denied(reason),
        credentials::Error::Unavailable(reason) => ToolError::Upstream(reason),
    })?;
    let mut out = json!({
        "name": credential.name(),
        "scopes": credential.scopes(),
        "audience": credential.audience(),
        "expires_at": credential.expires_at(),
    });
    if wanted["reveal"].as_bool() == Some(true) {
        out["reveal"] = match credential.reveal() {
            Ok(value) => json!({ "value": value }),
            Err(error) => json!({ "error": error.to_string() }),
        };
    }
    Ok(out)
}

toolcell_sdk::export_tool!(Probe);
