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
    pub(crate) tls: Arc<rustls::ClientConfig>,
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

/// Builds the TLS client config: the system's roots plus `extra` PEM roots.
pub(crate) fn tls_config(extra: &[std::path::PathBuf]) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    // Ambient authority: the system's TLS roots.
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system root rustls cannot parse is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    for path in extra {
        use rustls::pki_types::pem::PemObject;
        let file = |cause| TlsError::File { path: path.clone(), cause };
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(file)? {
            roots.add(cert.map_err(file)?).map_err(|cause| TlsError::Root { path: path.clone(), cause })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocols)?
        .with_root_certificates(roots)
        .with_no_client_auth())
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
    tls: Option<&Arc<rustls::ClientConfig>>,
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
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
        Ok(Ok(tls)) => Ok(Box::new(tls)),
        Ok(Err(error)) => Err(ConnectError::Tls(error)),
        Err(_) => Err(ConnectError::Timeout("TLS handshake")),
    }
}
