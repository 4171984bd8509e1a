//! Webhooks: each new approval request is POSTed as JSON to the URL in
//! `[approvals] webhook`, and each anomaly to the URL in `[monitor]
//! webhook` (`https://`, with the runtime's TLS roots, or `http://`), for a
//! chat or ticket integration. Approvals are answered through the admin
//! interface (`toolcell approvals approve ID --digest D`, or `POST /admin`).
//! A webhook that fails is logged and not retried: an approval request
//! still waits for an answer through the other channels, and an anomaly is
//! in the audit trail.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::handler::State;

/// A webhook's target, checked at start.
#[derive(Clone, Debug)]
pub struct Webhook {
    url: String,
    /// Its setting, for messages: `[approvals] webhook`.
    setting: &'static str,
}

impl Webhook {
    pub fn parse(url: &str, setting: &'static str) -> Result<Webhook> {
        let uri: http::Uri = url.parse().with_context(|| format!("{setting} `{url}` is not a URL"))?;
        if !matches!(uri.scheme_str(), Some("https" | "http")) {
            bail!("{setting} `{url}`: use an https:// (or http://) URL");
        }
        uri.host().with_context(|| format!("{setting} names no host"))?;
        Ok(Webhook { url: url.to_owned(), setting })
    }

    /// Posts every approval request the runtime raises, until the server stops.
    pub async fn approvals(self, state: Arc<State>) {
        let raised = state.runtime.approvals().subscribe();
        self.forward(state, raised, |request| {
            serde_json::json!({
                "answer_with": format!(
                    "toolcell approvals approve {} --digest {} (or deny {} --reason TEXT)",
                    request.id, request.digest, request.id
                ),
                "approval": request,
            })
        })
        .await;
    }

    /// Posts every anomaly the runtime raises, until the server stops.
    pub async fn anomalies(self, state: Arc<State>) {
        let raised = state.runtime.controls().anomalies();
        self.forward(state, raised, |anomaly| serde_json::json!({ "anomaly": anomaly })).await;
    }

    async fn forward<T: Clone>(
        self,
        state: Arc<State>,
        mut raised: tokio::sync::broadcast::Receiver<T>,
        body: impl Fn(T) -> serde_json::Value,
    ) {
        loop {
            match raised.recv().await {
                Ok(item) => {
                    let body = body(item).to_string();
                    let (url, setting, state) = (self.url.clone(), self.setting, state.clone());
                    tokio::spawn(async move {
                        match state.runtime.post_operator_json(&url, body, Duration::from_secs(10)).await {
                            Ok(status) if (200..300).contains(&status) => {}
                            Ok(status) => eprintln!("toolcell: {setting} {url} answered {status}"),
                            Err(error) => eprintln!("toolcell: {setting}: {error}"),
                        }
                    });
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    eprintln!("toolcell: {} fell behind; {missed} not posted", self.setting);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
