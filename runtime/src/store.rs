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

use crate::caps::credentials::CredentialsView;
use crate::caps::http::EgressHooks;
use crate::caps::log::LogView;
use crate::caps::stdio::OutputSink;
use crate::credentials::broker::Broker;
use crate::error::{LimitHit, LimitKind};
use crate::meter::Meter;
use crate::units::ByteSize;

pub(crate) use crate::bindings::{WitToolError, WitToolInfo};

pub(crate) use crate::audit::InvocationIds;

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

impl InvocationState {
    /// What the `log` capability sees of the invocation.
    pub(crate) fn log_view(&mut self) -> LogView<'_> {
        LogView { meter: &self.meter, sink: &self.sink, ids: &self.ids }
    }

    /// What the `credentials` capability sees of the invocation.
    pub(crate) fn credentials_view(&mut self) -> CredentialsView<'_> {
        CredentialsView { table: &mut self.table, broker: &self.credentials }
    }
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
