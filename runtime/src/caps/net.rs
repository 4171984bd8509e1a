//! Raw sockets: each operation is decided by the decision point
//! (`decide::socket`): TCP connects and UDP sends to the exact addresses a
//! grant names, the implicit ephemeral bind before them, nothing else. Name
//! lookup is always refused (names are the egress hook's business).

use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;

use crate::audit::AuditScope;
use crate::decide::socket::SocketUse;
use crate::decide::{CallContext, Request, decide};
use crate::policy::socket::SocketProtocol;

/// Grants the call's sockets: the protocols its grant names, every address
/// asked through the decision point.
pub(crate) fn grant_sockets(wasi: &mut WasiCtxBuilder, who: &AuditScope, call: &Arc<CallContext>) {
    let has = |protocol| call.grant.sockets.iter().any(|g| g.protocol == protocol);
    wasi.allow_tcp(has(SocketProtocol::Tcp)).allow_udp(has(SocketProtocol::Udp)).allow_ip_name_lookup(false);
    let (who, call) = (who.clone(), call.clone());
    wasi.socket_addr_check(move |address, usage| {
        let allowed = decide(Request { who: &who, call: Some(&call), action: SocketUse { address, usage } }).is_ok();
        Box::pin(async move { allowed })
    });
}
