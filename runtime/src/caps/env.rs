//! Environment variables: exactly the granted ones. The host's own
//! environment is never inherited.

use wasmtime_wasi::WasiCtxBuilder;

use crate::grant::Grant;

pub(crate) fn grant_env(wasi: &mut WasiCtxBuilder, grant: &Grant) {
    for (name, value) in &grant.env {
        wasi.env(name, value);
    }
}
