//! Environment grants: the variables a tool sees, and where each value
//! comes from. Values never appear in Debug output.

use std::fmt;

/// One environment variable a tool may see.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvGrant {
    /// The variable's name inside the guest.
    pub name: String,
    /// Where its value comes from.
    pub source: EnvSource,
}

/// Where a granted variable's value comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum EnvSource {
    /// The host's variable of the same name, read when a task opens.
    Host,
    /// A value written in the manifest.
    Value(String),
}

// Values are left out of Debug output: an operator may pass a token through
// the environment, and Debug output ends up in logs.
impl fmt::Debug for EnvGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvGrant").field("name", &self.name).field("source", &self.source).finish()
    }
}

impl fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EnvSource::Host => "Host",
            EnvSource::Value(_) => "Value(<hidden>)",
        })
    }
}
