//! The `oauth-token-exchange` provider: RFC 8693. The task's own issuer token
//! (workload as `sub`, principal as `act`) is the subject token; the
//! authorization server answers with a narrower access token for one
//! audience, which is revoked (RFC 7009) at teardown where the server has a
//! revocation endpoint.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

use crate::credentials::config::TokenExchangeConfig;
use crate::credentials::error::ProviderError;
use crate::credentials::upstream::{self, form, form_encode};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A client of one token endpoint.
#[derive(Debug)]
pub(crate) struct TokenExchange {
    pub(crate) config: TokenExchangeConfig,
    tls: crate::transport::Tls,
}

/// An exchanged access token.
pub(crate) struct Exchanged {
    pub(crate) token: SecretString,
    pub(crate) scopes: Vec<String>,
    pub(crate) expires_at: u64,
}

impl TokenExchange {
    pub(crate) fn new(config: TokenExchangeConfig, tls: crate::transport::Tls) -> TokenExchange {
        TokenExchange { config, tls }
    }

    fn basic_auth(&self) -> Result<SecretString, ProviderError> {
        let secret = self
            .config
            .client_secret
            .read()
            .map_err(|cause| ProviderError::Secret { what: Some("toolcell's OAuth client secret"), cause })?;
        // RFC 6749 §2.3.1: both parts are form-encoded before joining.
        let pair = zeroize::Zeroizing::new(format!(
            "{}:{}",
            form_encode(&self.config.client_id),
            form_encode(secret.expose_secret())
        ));
        Ok(SecretString::from(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()))))
    }

    /// Exchanges `subject` (with `actor`, where given) for a token for
    /// `audience` with `scopes`, living no longer than `not_after`.
    pub(crate) async fn exchange(
        &self,
        subject: &SecretString,
        actor: Option<&SecretString>,
        audience: &str,
        scopes: &[String],
        not_after: SystemTime,
    ) -> Result<Exchanged, ProviderError> {
        let scope = scopes.join(" ");
        let mut pairs = vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", subject.expose_secret()),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("audience", audience),
        ];
        if !scope.is_empty() {
            pairs.push(("scope", &scope));
        }
        if let Some(actor) = actor {
            pairs.push(("actor_token", actor.expose_secret()));
            pairs.push(("actor_token_type", ACCESS_TOKEN_TYPE));
        }
        let body = zeroize::Zeroizing::new(form(&pairs));
        let auth = self.basic_auth()?;
        let answer = upstream::send(
            &self.tls,
            http::Method::POST,
            &self.config.token_endpoint,
            &[
                ("authorization", auth.expose_secret()),
                ("content-type", "application/x-www-form-urlencoded"),
                ("accept", "application/json"),
            ],
            body.to_vec(),
            self.config.timeout.0,
        )
        .await?;
        if answer.status != 200 {
            return Err(answer.refusal(format!("token exchange for `{audience}`")));
        }
        let json = answer.json("token exchange")?;
        let Some(token) = json["access_token"].as_str() else {
            return Err(ProviderError::Unusable("token exchange: the answer has no access_token".into()));
        };
        // RFC 8693 §2.2.1: `scope` may be left out when it is what was asked.
        let granted: Vec<String> = match json["scope"].as_str() {
            Some(scope) => scope.split_whitespace().map(str::to_owned).collect(),
            None => scopes.to_vec(),
        };
        let token = SecretString::from(token.to_owned());
        if let Some(extra) = granted.iter().find(|s| !scopes.contains(s)) {
            // Wider than asked: never used, and revoked where the server can.
            let _ = self.revoke(&token).await;
            return Err(ProviderError::Unusable(format!(
                "token exchange: the server granted scope `{extra}`, which was not asked for"
            )));
        }
        // The crash rule: the token's life as the server states it must end
        // by the call's deadline (whole seconds, so one second of rounding
        // is allowed). Then a runtime killed mid-call leaves nothing that
        // outlives the call at the server, with no token value at rest. A
        // token without `expires_in`, or living longer, is revoked before
        // the tool can use it.
        let received = SystemTime::now();
        let limit = not_after + Duration::from_secs(1);
        let expires = json["expires_in"].as_u64().map(|life| received + Duration::from_secs(life));
        let refusal = match expires {
            None => Some("the server did not state the token's lifetime (`expires_in`)".to_owned()),
            Some(expires) if expires > limit => Some(format!(
                "the server gave the token {}s of life, past the call's deadline {}s away",
                expires.duration_since(received).map_or(0, |d| d.as_secs()),
                not_after.duration_since(received).map_or(0, |d| d.as_secs()),
            )),
            Some(_) => None,
        };
        if let Some(refusal) = refusal {
            let revoked = match self.revoke(&token).await {
                Ok(true) => "it was revoked".to_owned(),
                Ok(false) => "the server has no revocation endpoint, so it lives until it expires".to_owned(),
                Err(error) => format!("revoking it failed: {error}"),
            };
            return Err(ProviderError::Unusable(format!(
                "token exchange for `{audience}`: {refusal}; toolcell only uses exchanged tokens that die by the \
                 call's deadline, and {revoked}"
            )));
        }
        let expires_at = expires.unwrap_or(received).duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let cap = not_after.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Ok(Exchanged { token, scopes: granted, expires_at: expires_at.min(cap) })
    }

    /// Revokes an exchanged token (RFC 7009). `Ok(false)` when the server
    /// has no revocation endpoint: the token then dies at its expiry.
    pub(crate) async fn revoke(&self, token: &SecretString) -> Result<bool, ProviderError> {
        let Some(endpoint) = &self.config.revocation_endpoint else { return Ok(false) };
        let body =
            zeroize::Zeroizing::new(form(&[("token", token.expose_secret()), ("token_type_hint", "access_token")]));
        let auth = self.basic_auth()?;
        let answer = upstream::send(
            &self.tls,
            http::Method::POST,
            endpoint,
            &[("authorization", auth.expose_secret()), ("content-type", "application/x-www-form-urlencoded")],
            body.to_vec(),
            self.config.timeout.0,
        )
        .await?;
        match answer.status {
            200 => Ok(true),
            _ => Err(answer.refusal("revoking an exchanged token")),
        }
    }
}
