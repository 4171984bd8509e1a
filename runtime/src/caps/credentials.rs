//! The toolcell `credentials` import: `acquire` returns a handle to a
//! credential minted for this call; its methods show names, scopes and
//! expiry, and `reveal` shows the value only where the manifest says
//! `reveal`. Everything goes through the invocation's broker, which also
//! serves the egress hook's injection and revokes at teardown.

use wasmtime::component::{HasSelf, Linker, Resource};

use crate::credentials::{CredentialError, CredentialView};
use crate::store::InvocationState;
use crate::store::toolcell::tool::credentials::{Error as WitError, Host, HostCredential};

/// The host side of a guest's `credential` handle: an index into the
/// invocation's broker. It holds no secret.
#[derive(Debug)]
pub struct CredentialHandle {
    index: usize,
}

pub(crate) fn add_to_linker(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    crate::store::toolcell::tool::credentials::add_to_linker::<_, HasSelf<InvocationState>>(linker, |state| state)
}

impl From<CredentialError> for WitError {
    fn from(error: CredentialError) -> WitError {
        match error {
            CredentialError::Denied(reason) => WitError::Denied(reason),
            CredentialError::Unavailable(reason) => WitError::Unavailable(reason),
        }
    }
}

impl InvocationState {
    /// What a handle refers to.
    fn credential(&mut self, handle: &Resource<CredentialHandle>) -> wasmtime::Result<CredentialView> {
        let index = self.table.get(handle)?.index;
        self.credentials.view(index).ok_or_else(|| wasmtime::Error::msg("stale credential handle"))
    }
}

impl Host for InvocationState {
    async fn acquire(
        &mut self,
        name: String,
        scopes: Vec<String>,
    ) -> wasmtime::Result<Result<Resource<CredentialHandle>, WitError>> {
        let broker = self.credentials.clone();
        match broker.acquire(&name, &scopes).await {
            Ok(index) => Ok(Ok(self.table.push(CredentialHandle { index })?)),
            Err(error) => Ok(Err(error.into())),
        }
    }
}

impl HostCredential for InvocationState {
    async fn name(&mut self, handle: Resource<CredentialHandle>) -> wasmtime::Result<String> {
        Ok(self.credential(&handle)?.name)
    }

    async fn scopes(&mut self, handle: Resource<CredentialHandle>) -> wasmtime::Result<Vec<String>> {
        Ok(self.credential(&handle)?.scopes)
    }

    async fn audience(&mut self, handle: Resource<CredentialHandle>) -> wasmtime::Result<String> {
        Ok(self.credential(&handle)?.audience)
    }

    async fn expires_at(&mut self, handle: Resource<CredentialHandle>) -> wasmtime::Result<u64> {
        Ok(self.credential(&handle)?.expires_at)
    }

    async fn reveal(&mut self, handle: Resource<CredentialHandle>) -> wasmtime::Result<Result<String, WitError>> {
        let index = self.table.get(&handle)?.index;
        // The broker's copy is zeroized when it drops; the string handed to
        // the guest is the one copy that leaves the host's control.
        Ok(self.credentials.reveal(index).map(|value| String::clone(&value)).map_err(WitError::from))
    }

    async fn drop(&mut self, handle: Resource<CredentialHandle>) -> wasmtime::Result<()> {
        // The credential lives until the call ends; only the handle goes.
        self.table.delete(handle)?;
        Ok(())
    }
}
