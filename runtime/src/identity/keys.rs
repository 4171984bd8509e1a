//! The authorization server's metadata (RFC 8414, or OpenID discovery) and
//! its signing keys (the JWKS), fetched when first needed and kept for the
//! configured time.
//!
//! Fail closed: keys are trusted only while their cache lasts. When the
//! JWKS cannot be fetched after that, tokens are refused with the reason
//! rather than checked against keys that may have been withdrawn. A token
//! whose `kid` is not in the cache makes toolcell fetch the JWKS again (at
//! most once per `jwks_min_refresh`), which is how a rotation at the
//! authorization server is picked up; keys it no longer publishes are
//! dropped then.

use std::time::{Duration, Instant};

use super::jwt::Jwk;
use super::{OAuthConfig, TokenRefusal};
use crate::credentials::upstream;

/// What toolcell reads of the authorization server's metadata.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServerMetadata {
    pub(crate) jwks_uri: Option<String>,
    pub(crate) introspection_endpoint: Option<String>,
}

#[derive(Default)]
struct Cached {
    metadata: Option<ServerMetadata>,
    keys: Vec<Jwk>,
    fetched: Option<Instant>,
}

/// The keys of one authorization server.
pub(crate) struct KeySource {
    issuer: String,
    jwks_uri: Option<String>,
    introspection_endpoint: Option<String>,
    tls: crate::transport::Tls,
    timeout: Duration,
    cache_for: Duration,
    min_refresh: Duration,
    /// Held across a fetch, so concurrent requests wait for one fetch
    /// instead of each sending their own.
    cached: tokio::sync::Mutex<Cached>,
}

impl KeySource {
    pub(crate) fn new(config: &OAuthConfig, tls: crate::transport::Tls) -> KeySource {
        KeySource {
            issuer: config.issuer.clone(),
            jwks_uri: config.jwks_uri.clone(),
            introspection_endpoint: config.introspection.as_ref().and_then(|i| i.endpoint.clone()),
            tls,
            timeout: config.timeout.0,
            cache_for: config.jwks_cache.0,
            min_refresh: config.jwks_min_refresh.0,
            cached: tokio::sync::Mutex::new(Cached::default()),
        }
    }

    /// The key that signed a token with this `kid` and `alg`.
    pub(crate) async fn key_for(&self, kid: Option<&str>, alg: &str) -> Result<Jwk, TokenRefusal> {
        let mut cached = self.cached.lock().await;
        let stale = cached.fetched.is_none_or(|at| at.elapsed() >= self.cache_for);
        if stale && let Err(reason) = self.refresh(&mut cached).await {
            // Past their cache time, keys are not trusted any longer.
            cached.keys.clear();
            cached.fetched = None;
            return Err(TokenRefusal::KeysUnavailable(reason));
        }
        if let Some(key) = find(&cached.keys, kid, alg) {
            return Ok(key);
        }
        // Perhaps a new key: fetch again, unless that was just done.
        let recent = cached.fetched.is_some_and(|at| at.elapsed() < self.min_refresh);
        if !recent
            && self.refresh(&mut cached).await.is_ok()
            && let Some(key) = find(&cached.keys, kid, alg)
        {
            return Ok(key);
        }
        Err(TokenRefusal::UnknownKey { kid: kid.map(super::clip) })
    }

    /// Fetches the keys now.
    pub(crate) async fn prefetch(&self) -> Result<(), String> {
        let mut cached = self.cached.lock().await;
        self.refresh(&mut cached).await
    }

    /// Fetches the JWKS again (discovering where it is first, if needed).
    async fn refresh(&self, cached: &mut Cached) -> Result<(), String> {
        let jwks_uri = match &self.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let metadata = self.metadata_in(cached).await?;
                metadata.jwks_uri.ok_or_else(|| {
                    format!("the metadata of `{}` names no jwks_uri; set [serve.oauth] jwks_uri", self.issuer)
                })?
            }
        };
        let answer = self.get(&jwks_uri).await?;
        let keys = answer
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| format!("the JWKS at {jwks_uri} has no `keys` array"))?;
        cached.keys = keys.iter().filter_map(Jwk::parse).collect();
        cached.fetched = Some(Instant::now());
        tracing::debug!(target: "toolcell::oauth", keys = cached.keys.len(), "fetched the JWKS from {jwks_uri}");
        Ok(())
    }

    /// Where introspection is: configured, or from the server's metadata.
    pub(crate) async fn introspection_endpoint(&self) -> Result<String, String> {
        if let Some(endpoint) = &self.introspection_endpoint {
            return Ok(endpoint.clone());
        }
        let mut cached = self.cached.lock().await;
        let metadata = self.metadata_in(&mut cached).await?;
        metadata.introspection_endpoint.ok_or_else(|| {
            format!(
                "the metadata of `{}` names no introspection_endpoint; set [serve.oauth.introspection] endpoint",
                self.issuer
            )
        })
    }

    /// The server's metadata, discovered once: RFC 8414 first, then OpenID
    /// discovery. Its `issuer` must be the configured one (RFC 8414 §3.3).
    async fn metadata_in(&self, cached: &mut Cached) -> Result<ServerMetadata, String> {
        if let Some(metadata) = &cached.metadata {
            return Ok(metadata.clone());
        }
        let mut errors = Vec::new();
        for url in metadata_urls(&self.issuer) {
            match self.get(&url).await {
                Ok(document) => {
                    let issuer = document.get("issuer").and_then(|i| i.as_str()).unwrap_or_default();
                    if issuer != self.issuer {
                        errors.push(format!("{url} names issuer `{}`, not `{}`", super::clip(issuer), self.issuer));
                        continue;
                    }
                    let text = |name: &str| document.get(name).and_then(|v| v.as_str()).map(str::to_owned);
                    let metadata = ServerMetadata {
                        jwks_uri: text("jwks_uri"),
                        introspection_endpoint: text("introspection_endpoint"),
                    };
                    cached.metadata = Some(metadata.clone());
                    return Ok(metadata);
                }
                Err(error) => errors.push(error),
            }
        }
        Err(format!("cannot discover the authorization server `{}`: {}", self.issuer, errors.join("; ")))
    }

    async fn get(&self, url: &str) -> Result<serde_json::Value, String> {
        let answer = upstream::send(
            &self.tls,
            http::Method::GET,
            url,
            &[("accept", "application/json")],
            Vec::new(),
            self.timeout,
        )
        .await
        .map_err(|error| error.to_string())?;
        if answer.status != 200 {
            return Err(format!("{url} answered {}", answer.status));
        }
        answer.json(url).map_err(|error| error.to_string())
    }

    /// Sends one introspection request (RFC 7662) and returns the answer.
    pub(crate) async fn post_form(
        &self,
        url: &str,
        authorization: &str,
        body: Vec<u8>,
    ) -> Result<serde_json::Value, String> {
        let headers = [
            ("authorization", authorization),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ];
        let answer = upstream::send(&self.tls, http::Method::POST, url, &headers, body, self.timeout)
            .await
            .map_err(|error| error.to_string())?;
        if answer.status != 200 {
            return Err(format!("{url} answered {}: {}", answer.status, answer.error_text()));
        }
        answer.json(url).map_err(|error| error.to_string())
    }
}

/// The key for `kid` that fits `alg`; without a `kid`, the one key that fits.
fn find(keys: &[Jwk], kid: Option<&str>, alg: &str) -> Option<Jwk> {
    match kid {
        Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid) && k.fits(alg)).cloned(),
        None => {
            let mut fitting = keys.iter().filter(|k| k.fits(alg));
            let only = fitting.next()?;
            fitting.next().is_none().then(|| only.clone())
        }
    }
}

/// RFC 8414 §3.1: the well-known segment goes between the host and the
/// issuer's path; OpenID discovery appends to the issuer.
fn metadata_urls(issuer: &str) -> Vec<String> {
    let trimmed = issuer.trim_end_matches('/');
    let (origin, path) = match trimmed.find("://").map(|at| at + 3) {
        Some(start) => match trimmed[start..].find('/') {
            Some(slash) => trimmed.split_at(start + slash),
            None => (trimmed, ""),
        },
        None => (trimmed, ""),
    };
    vec![
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{trimmed}/.well-known/openid-configuration"),
    ]
}

#[cfg(test)]
mod tests {
    use super::metadata_urls;

    #[test]
    fn metadata_is_looked_for_where_rfc_8414_and_openid_put_it() {
        assert_eq!(
            metadata_urls("https://as.example/tenant1"),
            [
                "https://as.example/.well-known/oauth-authorization-server/tenant1",
                "https://as.example/tenant1/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            metadata_urls("http://127.0.0.1:9000"),
            [
                "http://127.0.0.1:9000/.well-known/oauth-authorization-server",
                "http://127.0.0.1:9000/.well-known/openid-configuration"
            ]
        );
    }
}
