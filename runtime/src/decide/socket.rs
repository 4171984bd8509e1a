//! `socket`: raw sockets are denied, except TCP connects and UDP sends to
//! the exact addresses a grant names. Listening and accepting are always
//! refused, and a bind is allowed only as the implicit ephemeral bind of a
//! granted connect or send. (Name lookup is refused before it gets here:
//! names are the egress hook's business.)

use std::net::SocketAddr;

use wasmtime_wasi::sockets::SocketAddrUse;

use crate::audit::AuditKind;
use crate::decide::{Action, CallContext, Denial};
use crate::policy::socket::{SocketGrant, SocketProtocol};

/// One socket operation on one address.
pub(crate) struct SocketUse {
    pub(crate) address: SocketAddr,
    pub(crate) usage: SocketAddrUse,
}

/// The operation's name in audit events and denials.
fn usage_name(usage: SocketAddrUse) -> &'static str {
    match usage {
        SocketAddrUse::TcpBind => "tcp_bind",
        SocketAddrUse::TcpConnect => "tcp_connect",
        SocketAddrUse::TcpListen => "tcp_listen",
        SocketAddrUse::TcpAccept => "tcp_accept",
        SocketAddrUse::UdpBind => "udp_bind",
        SocketAddrUse::UdpSend => "udp_send",
        SocketAddrUse::UdpReceive => "udp_receive",
    }
}

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

impl Action for SocketUse {
    type Allowed = ();
    const NAME: &'static str = "socket";

    fn within_grant(&self, call: Option<&CallContext>) -> Result<(), Denial> {
        let call = call.expect("sockets are used by calls");
        if socket_allowed(&call.grant.sockets, self.address, self.usage) {
            return Ok(());
        }
        let reason = match self.usage {
            SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => "listening and accepting are never granted",
            SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
                "a bind is granted only as the implicit one before a granted connect or send"
            }
            _ => "the grant does not name this address",
        };
        Err(Denial::denied(format!("{} {}: {reason}", usage_name(self.usage), self.address)))
    }

    fn denied(&self, call: Option<&CallContext>, denial: &Denial) -> Option<AuditKind> {
        // A datagram from a peer the grant does not name is dropped; it is
        // the peer's act, not the tool's, and is neither recorded nor counted.
        if matches!(self.usage, SocketAddrUse::UdpReceive) {
            return None;
        }
        Some(AuditKind::Socket {
            invocation: call.map_or_else(String::new, |call| call.invocation.clone()),
            decision: denial.decision.name(),
            operation: usage_name(self.usage),
            address: self.address.to_string(),
            reason: denial.reason.clone(),
        })
    }
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
