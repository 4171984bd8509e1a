//! The approval webhook: each new approval request is POSTed as JSON to the
//! URL in `[approvals] webhook` (`https://`, with the runtime's TLS roots, or
//! `http://`), for a chat or ticket integration, which answers through the
//! admin interface (`toolcell approvals approve ID --digest D`, or `POST
//! /admin`). A webhook that fails is logged and not retried: the request
//! still waits for an answer through the other channels.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::handler::State;

/// The webhook's target, checked at start.
#[derive(Clone, Debug)]
pub struct Webhook {
    url: String,
}

impl Webhook {
    pub fn parse(url: &str) -> Result<Webhook> {
        let uri: http::Uri = url.parse().with_context(|| format!("[approvals] webhook `{url}` is not a URL"))?;
        if !matches!(uri.scheme_str(), Some("https" | "http")) {
            bail!("[approvals] webhook `{url}`: use an https:// (or http://) URL");
        }
        uri.host().context("[approvals] webhook names no host")?;
        Ok(Webhook { url: url.to_owned() })
    }

    /// Posts every request the runtime raises, until the server stops.
    pub async fn run(self, state: Arc<State>) {
        let mut raised = state.runtime.approvals().subscribe();
        loop {
            match raised.recv().await {
                Ok(request) => {
                    let body = serde_json::json!({
                        "approval": request,
                        "answer_with": format!(
                            "toolcell approvals approve {} --digest {} (or deny {} --reason TEXT)",
                            request.id, request.digest, request.id
                        ),
                    });
                    let (url, state) = (self.url.clone(), state.clone());
                    tokio::spawn(async move {
                        match state.runtime.post_operator_json(&url, body.to_string(), Duration::from_secs(10)).await {
                            Ok(status) if (200..300).contains(&status) => {}
                            Ok(status) => eprintln!("toolcell: approval webhook {url} answered {status}"),
                            Err(error) => eprintln!("toolcell: approval webhook: {error}"),
                        }
                    });
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    eprintln!("toolcell: approval webhook fell behind; {missed} request(s) not posted");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
