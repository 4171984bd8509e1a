//! Transport: how the host reaches other machines, shared by egress (a
//! tool's requests) and the credential providers (OpenBao, OAuth token
//! endpoints): name resolution through a replaceable [`Resolver`], the TLS
//! client configuration, and connecting — to an address already checked,
//! then TLS where asked — within one timeout.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

/// Resolves host names for egress. The runtime config can replace it, so
/// tests map names to loopback addresses without touching DNS.
pub trait Resolver: Send + Sync + std::fmt::Debug {
    /// Every address of `host`.
    fn resolve<'a>(&'a self, host: &'a str) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'a>>;
}

/// The operating system's resolver.
#[derive(Debug, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'a>> {
        Box::pin(async move {
            // Ambient authority: the operating system's resolver.
            let addresses = tokio::net::lookup_host((host, 0)).await?;
            Ok(addresses.map(|a| a.ip()).collect())
        })
    }
}

/// Fixed answers for some names; others go to `fallback` if there is one,
/// and fail otherwise.
#[derive(Debug, Default)]
pub struct StaticResolver {
    /// Name (lowercase) to addresses.
    pub hosts: std::collections::HashMap<String, Vec<IpAddr>>,
    /// Where names not in the map go; `None` fails them.
    pub fallback: Option<Arc<dyn Resolver>>,
}

impl Resolver for StaticResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'a>> {
        Box::pin(async move {
            if let Some(addresses) = self.hosts.get(host) {
                return Ok(addresses.clone());
            }
            match &self.fallback {
                Some(fallback) => fallback.resolve(host).await,
                None => {
                    Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no address known for `{host}`")))
                }
            }
        })
    }
}

/// What egress needs from the runtime: the resolver and the TLS roots.
#[derive(Clone, Debug)]
pub(crate) struct Network {
    pub(crate) resolver: Arc<dyn Resolver>,
    pub(crate) tls: Tls,
}

/// Why the TLS client config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A root file could not be read or parsed as PEM.
    #[error("TLS root file `{}`: {cause}", path.display())]
    File {
        /// The file the runtime config names.
        path: std::path::PathBuf,
        /// What went wrong reading it.
        cause: rustls::pki_types::pem::Error,
    },
    /// A certificate in a root file is not one rustls accepts as a root.
    #[error("TLS root in `{}`: {cause}", path.display())]
    Root {
        /// The file.
        path: std::path::PathBuf,
        /// Why the certificate was refused.
        cause: rustls::Error,
    },
    /// The crypto provider refused the protocol versions.
    #[error("{0}")]
    Protocols(rustls::Error),
}

/// The TLS client config, built on first use: the system's roots plus the
/// runtime config's extra PEM roots. The extra roots are read and checked
/// when the runtime starts (a bad file is a start-up error); the system's
/// only when a connection first needs them. Reading them (hundreds of
/// files under /etc/ssl) was a fifth of `toolcell serve`'s start-up, and
/// many runs never open a TLS connection.
#[derive(Clone)]
pub(crate) struct Tls {
    /// The config's extra roots, each checked in `new`.
    extra: Arc<rustls::RootCertStore>,
    /// The provider with its protocol versions accepted in `new`.
    builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>,
    config: Arc<std::sync::OnceLock<Arc<rustls::ClientConfig>>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("extra_roots", &self.extra.len()).finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads and checks the extra roots and the protocol versions.
    pub(crate) fn new(extra: &[std::path::PathBuf]) -> Result<Tls, TlsError> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for path in extra {
            let file = |cause| TlsError::File { path: path.clone(), cause };
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(file)? {
                roots.add(cert.map_err(file)?).map_err(|cause| TlsError::Root { path: path.clone(), cause })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Protocols)?;
        Ok(Tls { extra: Arc::new(roots), builder, config: Arc::default() })
    }

    /// The client config, built (with the system's roots) the first time.
    pub(crate) fn config(&self) -> Arc<rustls::ClientConfig> {
        self.config
            .get_or_init(|| {
                let mut roots = rustls::RootCertStore::clone(&self.extra);
                // Ambient authority: the system's TLS roots.
                for cert in rustls_native_certs::load_native_certs().certs {
                    // A system root rustls cannot parse is skipped, as browsers do.
                    let _ = roots.add(cert);
                }
                Arc::new(self.builder.clone().with_root_certificates(roots).with_no_client_auth())
            })
            .clone()
    }
}

/// A byte stream a connection runs over: plain TCP or TLS.
pub(crate) trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// Why a connection could not be made. The text names the step; it never
/// carries a secret.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// No address accepted the connection.
    #[error("connect: {0}")]
    Refused(std::io::Error),
    /// A step did not finish within the timeout.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The host name cannot be checked against a certificate.
    #[error("TLS name `{0}` is not valid")]
    TlsName(String),
    /// The TLS handshake failed (an unknown root, a wrong name, …).
    #[error("TLS: {0}")]
    Tls(std::io::Error),
}

/// Connects to the first of `addresses` (already resolved and checked by the
/// caller) that answers on `port`, then, with `tls`, runs the handshake
/// checking the certificate against `host`. Each step has `timeout`.
pub(crate) async fn connect(
    addresses: &[IpAddr],
    port: u16,
    host: &str,
    tls: Option<&Tls>,
    timeout: Duration,
) -> Result<Box<dyn Stream>, ConnectError> {
    let connect = async {
        let mut last = None;
        for address in addresses {
            match TcpStream::connect(SocketAddr::new(*address, port)).await {
                Ok(stream) => return Ok(stream),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
    };
    let stream = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(ConnectError::Refused(error)),
        Err(_) => return Err(ConnectError::Timeout("connect")),
    };
    let Some(tls) = tls else { return Ok(Box::new(stream)) };
    let name =
        rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|_| ConnectError::TlsName(host.to_owned()))?;
    let connector = tokio_rustls::TlsConnector::from(tls.config());
    match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
        Ok(Ok(tls)) => Ok(Box::new(tls)),
        Ok(Err(error)) => Err(ConnectError::Tls(error)),
        Err(_) => Err(ConnectError::Timeout("TLS handshake")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_extra_root_is_refused_at_start_not_at_the_first_connection() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let error = Tls::new(std::slice::from_ref(&missing)).unwrap_err();
        assert!(matches!(error, TlsError::File { .. }), "{error}");
        assert!(error.to_string().contains("missing.pem"), "{error}");

        // PEM that holds no certificate rustls accepts as a root.
        let not_a_cert = dir.path().join("not-a-cert.pem");
        std::fs::write(&not_a_cert, "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n").unwrap();
        let error = Tls::new(std::slice::from_ref(&not_a_cert)).unwrap_err();
        assert!(matches!(error, TlsError::Root { .. }), "{error}");
        assert!(error.to_string().contains("not-a-cert.pem"), "{error}");

        // No extra roots: the system's are read once, on first use, and shared by clones.
        let tls = Tls::new(&[]).unwrap();
        let again = tls.clone();
        assert!(Arc::ptr_eq(&tls.config(), &again.config()), "one config, built once");
    }
}
