//! Raw sockets: denied, except TCP connects and UDP sends to the exact
//! addresses a grant names. Name lookup is always refused (names are the
//! egress hook's business), listening and accepting are always refused, and
//! a bind is allowed only as the implicit ephemeral bind of a granted
//! connect or send.

use std::net::SocketAddr;
use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

use crate::grant::Grant;
use crate::policy::socket::{SocketGrant, SocketProtocol};

/// Decides one socket operation against the granted addresses.
pub(crate) fn socket_allowed(grants: &[SocketGrant], address: SocketAddr, usage: SocketAddrUse) -> bool {
    let has = |protocol| grants.iter().any(|g| g.protocol == protocol);
    let granted = |protocol| grants.iter().any(|g| g.protocol == protocol && g.address == address);
    // The implicit bind before a connect or send is to the wildcard address, port 0.
    let ephemeral = address.ip().is_unspecified() && address.port() == 0;
    match usage {
        SocketAddrUse::TcpConnect => granted(SocketProtocol::Tcp),
        SocketAddrUse::TcpBind => ephemeral && has(SocketProtocol::Tcp),
        // Datagrams go to, and come back from, granted peers only.
        SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => granted(SocketProtocol::Udp),
        SocketAddrUse::UdpBind => ephemeral && has(SocketProtocol::Udp),
        SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
    }
}

pub(crate) fn grant_sockets(wasi: &mut WasiCtxBuilder, grant: &Grant) {
    let grants: Arc<[SocketGrant]> = grant.sockets.clone().into();
    let has = |protocol| grants.iter().any(|g| g.protocol == protocol);
    wasi.allow_tcp(has(SocketProtocol::Tcp))
        .allow_udp(has(SocketProtocol::Udp))
        .allow_ip_name_lookup(false)
        .socket_addr_check(move |address, usage| {
            let allowed = socket_allowed(&grants, address, usage);
            Box::pin(async move { allowed })
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_granted_addresses_pass() {
        let grants = [SocketGrant { protocol: SocketProtocol::Tcp, address: "127.0.0.1:5432".parse().unwrap() }];
        let check = |addr: &str, usage| socket_allowed(&grants, addr.parse().unwrap(), usage);
        assert!(check("127.0.0.1:5432", SocketAddrUse::TcpConnect));
        assert!(check("0.0.0.0:0", SocketAddrUse::TcpBind));
        assert!(!check("127.0.0.1:5433", SocketAddrUse::TcpConnect));
        assert!(!check("127.0.0.1:5432", SocketAddrUse::TcpBind));
        assert!(!check("0.0.0.0:0", SocketAddrUse::TcpListen));
        assert!(!check("127.0.0.1:5432", SocketAddrUse::TcpAccept));
        assert!(!check("127.0.0.1:5432", SocketAddrUse::UdpSend));
        assert!(!check("0.0.0.0:0", SocketAddrUse::UdpBind));
        assert!(!socket_allowed(&[], "0.0.0.0:0".parse().unwrap(), SocketAddrUse::TcpBind));
    }
}
