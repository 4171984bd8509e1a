//! Raw sockets: each operation is decided by the decision point
//! (`decide::socket`): TCP connects and UDP sends to the exact addresses a
//! grant names, the implicit ephemeral bind before them, nothing else. Name
//! lookup is always refused (names are the egress hook's business).

use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;

use crate::audit::AuditScope;
use crate::decide::socket::SocketUse;
use crate::decide::{CallContext, Request, decide, govern};
use crate::policy::socket::SocketProtocol;
use crate::request_policy::PolicyAction;
use wasmtime_wasi::sockets::SocketAddrUse;

/// Grants the call's sockets: the protocols its grant names, every address
/// asked through the decision point.
pub(crate) fn grant_sockets(wasi: &mut WasiCtxBuilder, who: &AuditScope, call: &Arc<CallContext>) {
    let has = |protocol| call.grant.sockets.iter().any(|g| g.protocol == protocol);
    wasi.allow_tcp(has(SocketProtocol::Tcp)).allow_udp(has(SocketProtocol::Udp)).allow_ip_name_lookup(false);
    let (who, call) = (who.clone(), call.clone());
    wasi.socket_addr_check(move |address, usage| {
        let allowed = decide(Request { who: &who, call: Some(&call), action: SocketUse { address, usage } }).is_ok();
        // Connects and sends the grant allowed are asked of request-time
        // policy too; binds, listens and received datagrams are the grant's alone.
        let operation = match usage {
            SocketAddrUse::TcpConnect => Some(("tcp_connect", "tcp")),
            SocketAddrUse::UdpSend => Some(("udp_send", "udp")),
            _ => None,
        };
        let (who, call) = (who.clone(), call.clone());
        Box::pin(async move {
            let Some((operation, protocol)) = operation.filter(|_| allowed) else { return allowed };
            let asked = PolicyAction::Socket {
                operation: operation.to_owned(),
                protocol: protocol.to_owned(),
                ip: address.ip(),
                port: address.port(),
            };
            let action = SocketUse { address, usage };
            let allowed = govern(Request { who: &who, call: Some(&call), action }, asked, None).await.is_ok();
            if allowed {
                call.tally.used_socket(format!("{protocol} {address}"));
            }
            allowed
        })
    });
}
