//! Raw socket grants: the exact peers a tool may reach with TCP connects or
//! UDP sends. How they are enforced is `caps::net`'s business.

use std::net::SocketAddr;

/// A transport protocol of a socket grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketProtocol {
    /// TCP connect.
    Tcp,
    /// UDP send.
    Udp,
}

/// One address a tool may reach with a raw socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketGrant {
    /// TCP or UDP.
    pub protocol: SocketProtocol,
    /// The exact remote address and port.
    pub address: SocketAddr,
}
