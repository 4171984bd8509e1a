//! toolcell-sdk: what a tool author depends on to build a toolcell tool.
//!
//! A tool is a WebAssembly component built for `wasm32-wasip2` that exports
//! the `toolcell:tool/tool` world. Write a typed handler and mark it:
//!
//! ```ignore
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//! use toolcell_sdk::ToolError;
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Input {
//!     /// Who to greet.
//!     name: String,
//! }
//!
//! #[derive(Serialize, JsonSchema)]
//! struct Output {
//!     greeting: String,
//! }
//!
//! /// Greets someone by name.
//! #[toolcell_sdk::tool]
//! fn greet(input: Input) -> Result<Output, ToolError> {
//!     Ok(Output { greeting: format!("hello, {}", input.name) })
//! }
//! ```
//!
//! The attribute exports `describe` (the name `greet`, the doc comment as
//! the description, both JSON Schemas) and `invoke` (input parsed with
//! errors that name the field, output serialised, errors mapped to
//! `tool-error`). For full control, implement [`Guest`] and export it:
//!
//! ```ignore
//! use toolcell_sdk::{Guest, ToolError, ToolInfo};
//!
//! struct Echo;
//!
//! impl Guest for Echo {
//!     fn describe() -> ToolInfo {
//!         ToolInfo {
//!             name: "echo".into(),
//!             description: "Returns its input.".into(),
//!             input_schema: r#"{"type":"object"}"#.into(),
//!             output_schema: None,
//!         }
//!     }
//!     fn invoke(input: String) -> Result<String, ToolError> {
//!         Ok(input)
//!     }
//! }
//!
//! toolcell_sdk::export_tool!(Echo);
//! ```
//!
//! The crate is `cdylib`; `cargo build --target wasm32-wasip2 --release`
//! produces the component. Filesystem access goes through plain `std::fs` on
//! the paths the manifest grants. This crate never depends on wasmtime.

// The generated bindings are the guest side of the component ABI and are
// unsafe by nature; everything written by hand here is safe.
#[allow(unsafe_code, reason = "wit-bindgen's generated guest ABI glue is unsafe by nature")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "tool",
        pub_export_macro: true,
        export_macro_name: "export_tool",
        default_bindings_module: "toolcell_sdk::bindings",
        // So authors can compare tool errors and infos in their tests.
        additional_derives: [PartialEq, Eq],
        // wasi:http and what it uses come from the `wasip2` crate, so tools
        // share one set of WASI types with the rest of the ecosystem.
        with: {
            "wasi:http/types@0.2.12": wasip2::http::types,
            "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
        },
    });
}

pub use bindings::toolcell::tool::types::{ToolError, ToolInfo};
pub use toolcell_sdk_macros::tool;

mod handler;

#[doc(hidden)]
pub mod __private {
    pub use crate::handler::{describe, invoke};
}
pub use bindings::{Guest, export_tool};
/// WASI 0.2 bindings (`wasip2::http` for outbound HTTP through the host's egress checks).
pub use wasip2;

pub mod http;

/// Short-lived credentials the manifest grants this tool, minted by the host
/// for this call and revoked when it ends.
///
/// Most credentials are *injected*: make the HTTP request to the API the
/// manifest binds the credential to, and the host adds the header; the tool
/// never handles the token. `acquire` is for narrowing scopes before those
/// requests, reading expiry, or `reveal` where the manifest allows it.
pub mod credentials {
    pub use crate::bindings::toolcell::tool::credentials::{Credential, Error};

    /// Acquires credential `name` with `scopes` (empty: all the grant allows).
    pub fn acquire(name: &str, scopes: &[&str]) -> Result<Credential, Error> {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        crate::bindings::toolcell::tool::credentials::acquire(name, &scopes)
    }
}

/// Log lines that land in the host's audit/tracing stream with the task id.
/// They count against the call's output limit.
pub mod log {
    use crate::bindings::toolcell::tool::log::Level;

    /// Under toolcell the line goes to the host. In a native build (a tool's
    /// unit tests) there is no host, so it goes to stderr.
    fn log(level: Level, message: &str) {
        #[cfg(target_family = "wasm")]
        crate::bindings::toolcell::tool::log::log(level, message);
        #[cfg(not(target_family = "wasm"))]
        eprintln!("{level:?}: {message}");
    }

    /// Logs at trace level.
    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }
    /// Logs at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}
