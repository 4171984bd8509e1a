//! Per-invocation state: everything one fresh `Store` holds, built from a
//! [`Grant`](crate::grant::Grant) and dropped when the invocation ends.
//!
//! The [`Meter`] is shared between the store and the code that runs the call,
//! so a limit recorded deep inside a host function (output, memory, cpu) is
//! still known after the store and its instance are gone.

use std::sync::{Arc, Mutex};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::caps::http::EgressHooks;
use crate::caps::stdio::OutputSink;
use crate::credentials::broker::Broker;
use crate::error::{LimitHit, LimitKind};
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

/// Limits recorded during a call, the shared output budget and the
/// refusal count. Recording a limit also stops the call: code that runs the
/// call waits on [`Meter::stopped`] beside the call itself, so a limit that
/// host code records (a tool looping on refusals) ends the call at once.
#[derive(Debug)]
pub(crate) struct Meter {
    hit: Mutex<Option<LimitHit>>,
    output_limit: ByteSize,
    output_used: Mutex<u64>,
    refusal_limit: u32,
    refusals: std::sync::atomic::AtomicU32,
    stop: tokio::sync::Notify,
}

impl Meter {
    pub(crate) fn new(limits: &crate::manifest::Limits) -> Meter {
        Meter {
            hit: Mutex::new(None),
            output_limit: limits.max_output,
            output_used: Mutex::new(0),
            refusal_limit: limits.max_refusals,
            refusals: std::sync::atomic::AtomicU32::new(0),
            stop: tokio::sync::Notify::new(),
        }
    }

    /// Records the first limit hit; later ones are consequences of it.
    pub(crate) fn record(&self, hit: LimitHit) -> LimitHit {
        let mut slot = self.hit.lock().unwrap_or_else(|p| p.into_inner());
        let first = slot.is_none();
        let hit = slot.get_or_insert(hit).clone();
        if first {
            // One waiter (the call's runner); a permit is kept if it is not waiting yet.
            self.stop.notify_one();
        }
        hit
    }

    pub(crate) fn hit(&self) -> Option<LimitHit> {
        self.hit.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Resolves once a limit has been recorded.
    pub(crate) async fn stopped(&self) -> LimitHit {
        loop {
            if let Some(hit) = self.hit() {
                return hit;
            }
            self.stop.notified().await;
        }
    }

    /// Counts one refused request; past `max_refusals` it records the limit,
    /// which stops the call.
    pub(crate) fn refused(&self) -> Result<(), LimitHit> {
        let count = self.refusals.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        if count > self.refusal_limit {
            return Err(self.record(LimitHit {
                kind: LimitKind::Refusals,
                value: self.refusal_limit.to_string(),
                detail: Some(format!("{count} requests refused in this call")),
            }));
        }
        Ok(())
    }

    /// Takes `bytes` from the output budget shared by stdout, stderr, log
    /// lines and the tool's result; records the `max_output` limit when it runs out.
    pub(crate) fn take_output(&self, bytes: usize) -> Result<(), LimitHit> {
        let mut used = self.output_used.lock().unwrap_or_else(|p| p.into_inner());
        let wanted = used.saturating_add(bytes as u64);
        if wanted > self.output_limit.0 {
            return Err(self.record(LimitHit {
                kind: LimitKind::Output,
                value: self.output_limit.to_string(),
                detail: Some(format!("{wanted} bytes written")),
            }));
        }
        *used = wanted;
        Ok(())
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
