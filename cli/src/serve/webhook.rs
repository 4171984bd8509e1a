//! The approval webhook: each new approval request is POSTed as JSON to the
//! URL in `[approvals] webhook`, for a chat or ticket integration, which
//! answers through the admin interface (`toolcell approvals approve ID
//! --digest D`). A webhook that fails is logged and retried no more: the
//! request still waits for an answer through the other channels.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::Full;
use toolcell_runtime::Approvals;

/// The webhook's target, checked at start: plain `http://host:port/path`.
#[derive(Clone, Debug)]
pub struct Webhook {
    uri: http::Uri,
    authority: String,
}

impl Webhook {
    pub fn parse(url: &str) -> Result<Webhook> {
        let uri: http::Uri = url.parse().with_context(|| format!("[approvals] webhook `{url}` is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!(
                "[approvals] webhook `{url}`: only http:// is supported (put a TLS-terminating relay on the \
                 operator's side for https)"
            );
        }
        let authority = uri.authority().context("[approvals] webhook names no host")?.to_string();
        Ok(Webhook { uri, authority })
    }

    /// Posts every request `approvals` raises, until the server stops.
    pub async fn run(self, approvals: Arc<Approvals>) {
        let mut raised = approvals.subscribe();
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
                    let webhook = self.clone();
                    tokio::spawn(async move {
                        if let Err(error) = webhook.post(body.to_string()).await {
                            eprintln!("toolcell: approval webhook {}: {error:#}", webhook.uri);
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

    async fn post(&self, body: String) -> Result<()> {
        let work = async {
            let stream = tokio::net::TcpStream::connect(&self.authority).await.context("connecting")?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
            let request = http::Request::post(path)
                .header(http::header::HOST, &self.authority)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))?;
            let response = sender.send_request(request).await?;
            if !response.status().is_success() {
                bail!("answered {}", response.status());
            }
            Ok(())
        };
        tokio::time::timeout(Duration::from_secs(10), work).await.context("no answer within 10s")?
    }
}
