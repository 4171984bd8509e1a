//! One module per capability. Each turns its part of a [`Grant`](crate::grant::Grant)
//! into what the guest can reach, and nothing else; none reads manifests.

pub(crate) mod credentials;
pub(crate) mod env;
pub(crate) mod fs;
pub(crate) mod http;
pub(crate) mod log;
pub(crate) mod net;
pub(crate) mod stdio;
