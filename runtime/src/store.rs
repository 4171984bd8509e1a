//! Per-invocation state: everything one fresh `Store` holds, built from a
//! [`Grant`](crate::grant::Grant) and dropped when the invocation ends.
//!
//! The call's [`Meter`](crate::meter::Meter) is shared between the store and
//! the code that runs the call, so a limit recorded deep inside a host
//! function (output, memory, cpu) is still known after the store is gone.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::caps::http::EgressHooks;
use crate::caps::stdio::OutputSink;
use crate::credentials::broker::Broker;
use crate::error::{LimitHit, LimitKind};
use crate::meter::Meter;
use crate::units::ByteSize;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "tool",
    imports: { default: async | trappable },
    exports: { default: async },
    // The WASI interfaces come from wasmtime-wasi(-http), linked separately.
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "toolcell:tool/credentials.credential": crate::caps::credentials::CredentialHandle,
    },
});

pub(crate) use self::toolcell::tool::types::{ToolError as WitToolError, ToolInfo as WitToolInfo};

/// The data of one invocation's `Store`.
pub(crate) struct InvocationState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) memory: MemoryLimiter,
    pub(crate) meter: Arc<Meter>,
    pub(crate) sink: OutputSink,
    pub(crate) ids: InvocationIds,
    pub(crate) http: WasiHttpCtx,
    pub(crate) egress: EgressHooks,
    pub(crate) credentials: Arc<Broker>,
}

/// Ids that tag everything an invocation emits.
#[derive(Clone, Debug)]
pub(crate) struct InvocationIds {
    pub(crate) task: String,
    pub(crate) invocation: String,
    pub(crate) tool: String,
}

impl WasiHttpView for InvocationState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { hooks: &mut self.egress, table: &mut self.table, ctx: &mut self.http }
    }
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps the sum of all linear memories of an invocation. A denied growth
/// traps at once with the `memory` limit rather than letting the guest's
/// allocator limp on, so the caller learns which limit stopped it.
pub(crate) struct MemoryLimiter {
    pub(crate) limit: ByteSize,
    pub(crate) total: u64,
    pub(crate) meter: Arc<Meter>,
}

/// Tables hold function references; a guest growing one without bound would
/// eat host memory outside the `memory` limit.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.total.saturating_add((desired - current) as u64);
        if total > self.limit.0 {
            let hit = self.meter.record(LimitHit {
                kind: LimitKind::Memory,
                value: self.limit.to_string(),
                detail: Some(format!("the guest asked for {} in all", ByteSize(total))),
            });
            return Err(wasmtime::Error::msg(hit.to_string()));
        }
        self.total = total;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
