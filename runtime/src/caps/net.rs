//! Network: denied. Raw TCP, UDP and name lookup are refused for every guest
//! until egress rules exist to allow them. wasmtime-wasi's defaults already
//! deny every address; saying so here keeps the decision ours, not a default
//! that could change under us.

use wasmtime_wasi::WasiCtxBuilder;

pub(crate) fn deny_sockets(wasi: &mut WasiCtxBuilder) {
    wasi.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_addr, _use| Box::pin(async { false }));
}
