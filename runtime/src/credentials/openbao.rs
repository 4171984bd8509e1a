//! The `openbao` provider: a Vault-compatible secrets engine. Each task gets
//! a child of the runtime's token whose life ends at the task's deadline and
//! whose policies are the task's granted scopes; each invocation leases its
//! dynamic secrets with that child token. Teardown revokes the leases when
//! the invocation ends, and the child token (and with it anything left under
//! it) when the task closes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};

use crate::credentials::config::{OpenBaoConfig, OpenBaoSecret};
use crate::credentials::error::ProviderError;
use crate::credentials::upstream;

/// A client of one OpenBao server.
#[derive(Debug)]
pub(crate) struct OpenBao {
    pub(crate) config: OpenBaoConfig,
    tls: crate::transport::Tls,
}

/// A task's child token. Its value stays on the host; the accessor names it
/// in the audit trail and the lease journal.
pub(crate) struct ChildToken {
    pub(crate) token: SecretString,
    pub(crate) accessor: String,
    pub(crate) expires_at: u64,
}

/// One leased dynamic secret.
pub(crate) struct Lease {
    pub(crate) lease_id: String,
    pub(crate) value: SecretString,
    pub(crate) expires_at: u64,
}

/// What `{…}` placeholders in a secret's request data become.
pub(crate) struct LeaseVars<'a> {
    pub(crate) task: &'a str,
    pub(crate) tool: &'a str,
    pub(crate) invocation: &'a str,
    pub(crate) ttl: Duration,
}

fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs().max(1))
}

fn epoch_after(duration: Duration) -> u64 {
    (SystemTime::now() + duration).duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl OpenBao {
    pub(crate) fn new(config: OpenBaoConfig, tls: crate::transport::Tls) -> OpenBao {
        OpenBao { config, tls }
    }

    async fn call(
        &self,
        method: http::Method,
        path: &str,
        token: &SecretString,
        body: serde_json::Value,
    ) -> Result<upstream::Answer, ProviderError> {
        let url = format!("{}/v1/{}", self.config.address.trim_end_matches('/'), path.trim_start_matches('/'));
        let body = serde_json::to_vec(&body).expect("JSON serializes");
        upstream::send(
            &self.tls,
            method,
            &url,
            &[("x-vault-token", token.expose_secret()), ("content-type", "application/json")],
            body,
            self.config.timeout.0,
        )
        .await
    }

    fn runtime_token(&self) -> Result<SecretString, ProviderError> {
        self.config
            .token
            .read()
            .map_err(|cause| ProviderError::Secret { what: Some("the runtime's OpenBao token"), cause })
    }

    /// Creates a task's child token: exactly `policies` (never empty, never
    /// the default policy), not renewable, dead at `ttl`.
    pub(crate) async fn create_child_token(
        &self,
        policies: &[String],
        ttl: Duration,
        metadata: serde_json::Value,
    ) -> Result<ChildToken, ProviderError> {
        const WHAT: &str = "creating the task's child token";
        if policies.is_empty() {
            return Err(ProviderError::Unusable(
                "a task token with no policies would inherit the runtime token's; refused".into(),
            ));
        }
        let body = serde_json::json!({
            "policies": policies,
            "no_default_policy": true,
            "ttl": seconds(ttl),
            "explicit_max_ttl": seconds(ttl),
            "renewable": false,
            "display_name": "toolcell-task",
            "meta": metadata,
        });
        let answer = self
            .call(http::Method::POST, "auth/token/create", &self.runtime_token()?, body)
            .await
            .map_err(|e| e.during(WHAT))?;
        if answer.status != 200 {
            return Err(answer.refusal(WHAT));
        }
        let json = answer.json(WHAT)?;
        let auth = &json["auth"];
        let (Some(token), Some(accessor)) = (auth["client_token"].as_str(), auth["accessor"].as_str()) else {
            return Err(ProviderError::Unusable(format!("{WHAT}: the answer has no client_token and accessor")));
        };
        // OpenBao gives a child created with no policies its parent's; the
        // request never asks for none, and the answer is checked as well: a
        // child carrying a policy that was not granted is revoked at once.
        let carried: Vec<&str> = auth["policies"].as_array().into_iter().flatten().filter_map(|p| p.as_str()).collect();
        if let Some(extra) = carried.iter().find(|p| !policies.iter().any(|granted| granted == *p)) {
            let extra = (*extra).to_owned();
            let _ = self.revoke_token(accessor).await;
            return Err(ProviderError::Unusable(format!(
                "{WHAT}: it came back with policy `{extra}`, which was not granted (granted: {}); it was revoked",
                policies.join(", ")
            )));
        }
        let life = Duration::from_secs(auth["lease_duration"].as_u64().unwrap_or(ttl.as_secs()));
        Ok(ChildToken {
            token: SecretString::from(token.to_owned()),
            accessor: accessor.to_owned(),
            expires_at: epoch_after(life),
        })
    }

    /// Leases one dynamic secret with the task's child token.
    pub(crate) async fn lease(
        &self,
        child: &ChildToken,
        secret: &OpenBaoSecret,
        vars: &LeaseVars<'_>,
    ) -> Result<Lease, ProviderError> {
        let data: serde_json::Map<String, serde_json::Value> = secret
            .data
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    toml::Value::String(text) => serde_json::Value::String(
                        text.replace("{task}", vars.task)
                            .replace("{tool}", vars.tool)
                            .replace("{invocation}", vars.invocation)
                            .replace("{ttl}", &seconds(vars.ttl)),
                    ),
                    other => serde_json::to_value(other).unwrap_or(serde_json::Value::Null),
                };
                (key.clone(), value)
            })
            .collect();
        let what = format!("leasing `{}`", secret.path);
        let answer = self
            .call(http::Method::POST, &secret.path, &child.token, serde_json::Value::Object(data))
            .await
            .map_err(|e| e.during(what.clone()))?;
        if answer.status != 200 {
            return Err(answer.refusal(what));
        }
        let mut json = answer.json(&what)?;
        let lease_id = json["lease_id"].as_str().unwrap_or("").to_owned();
        if lease_id.is_empty() {
            // Without a lease there is nothing to revoke at teardown, so the
            // secret would outlive the call: refuse it.
            return Err(ProviderError::Unusable(format!(
                "`{}` answered without a lease, so toolcell could not revoke it at teardown \
                 (for PKI roles, set generate_lease = true)",
                secret.path
            )));
        }
        let life = Duration::from_secs(json["lease_duration"].as_u64().unwrap_or(0));
        let data = json["data"].take();
        let value = match &secret.field {
            Some(field) => match data.get(field) {
                Some(serde_json::Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => return Err(ProviderError::Unusable(format!("{what}: the answer has no field `{field}`"))),
            },
            None => data.to_string(),
        };
        Ok(Lease { lease_id, value: SecretString::from(value), expires_at: epoch_after(life) })
    }

    /// Revokes one lease now. A lease OpenBao no longer knows is already gone.
    pub(crate) async fn revoke_lease(&self, lease_id: &str) -> Result<(), ProviderError> {
        let body = serde_json::json!({ "lease_id": lease_id });
        self.revoke(http::Method::PUT, "sys/leases/revoke", body, "invalid lease", &format!("lease {lease_id}")).await
    }

    /// Revokes a child token by its accessor, and with it every lease under it.
    pub(crate) async fn revoke_token(&self, accessor: &str) -> Result<(), ProviderError> {
        let body = serde_json::json!({ "accessor": accessor });
        let what = format!("the task token (accessor {accessor})");
        self.revoke(http::Method::POST, "auth/token/revoke-accessor", body, "invalid accessor", &what).await
    }

    /// One revocation with the runtime's token. OpenBao answers 400 with
    /// `gone` for something it no longer knows: that is revoked already.
    async fn revoke(
        &self,
        method: http::Method,
        path: &str,
        body: serde_json::Value,
        gone: &str,
        what: &str,
    ) -> Result<(), ProviderError> {
        let answer = self.call(method, path, &self.runtime_token()?, body).await?;
        match answer.status {
            200 | 204 => Ok(()),
            400 if answer.error_text().contains(gone) => Ok(()),
            _ => Err(answer.refusal(format!("revoking {what}"))),
        }
    }
}
