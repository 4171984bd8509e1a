//! The toolcell `credentials` import: `acquire` returns a handle to a
//! credential minted for this call; its methods show names, scopes and
//! expiry, and `reveal` shows the value only where the manifest says
//! `reveal`. Everything goes through the invocation's broker, which also
//! serves the egress hook's injection and revokes at teardown.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::bindings::CredentialHandle;
use crate::bindings::toolcell::tool::credentials::{Error as WitError, Host, HostCredential};
use crate::credentials::broker::Broker;
use crate::credentials::{CredentialError, CredentialView};

/// What the guest's credentials need of its invocation: the handles' table
/// and the call's broker.
pub(crate) struct CredentialsView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) broker: &'a Arc<Broker>,
}

struct Credentials;

impl HasData for Credentials {
    type Data<'a> = CredentialsView<'a>;
}

/// Links the `credentials` import; `view` gives it its part of the store's data.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> CredentialsView<'_>,
) -> wasmtime::Result<()> {
    crate::bindings::toolcell::tool::credentials::add_to_linker::<T, Credentials>(linker, view)
}

impl From<CredentialError> for WitError {
    fn from(error: CredentialError) -> WitError {
        match error {
            CredentialError::Denied(reason) => WitError::Denied(reason),
            CredentialError::Unavailable(reason) => WitError::Unavailable(reason),
        }
    }
}

impl CredentialsView<'_> {
    /// What a handle refers to.
    fn credential(&mut self, handle: &Resource<CredentialHandle>) -> wasmtime::Result<CredentialView> {
        let index = self.table.get(handle)?.index;
        self.broker.view(index).ok_or_else(|| wasmtime::Error::msg("stale credential handle"))
    }
}

impl Host for CredentialsView<'_> {
    async fn acquire(
        &mut self,
        name: String,
        scopes: Vec<String>,
    ) -> wasmtime::Result<Result<Resource<CredentialHandle>, WitError>> {
        let broker = self.broker.clone();
        match broker.acquire(&name, &scopes).await {
            Ok(index) => Ok(Ok(self.table.push(CredentialHandle { index })?)),
            Err(error) => Ok(Err(error.into())),
        }
    }
}

impl HostCredential for CredentialsView<'_> {
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
        Ok(self.broker.reveal(index).map(|value| String::clone(&value)).map_err(WitError::from))
    }

    async fn drop(&mut self, handle: Resource<CredentialHandle>) -> wasmtime::Result<()> {
        // The credential lives until the call ends; only the handle goes.
        self.table.delete(handle)?;
        Ok(())
    }
}
