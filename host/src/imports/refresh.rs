//! `refresh`: queueing refreshes. No refresher is configured yet, so every
//! request is answered `not-configured` and the policy keeps the credential
//! out of rotation as it decides.

use crate::bindings::refresh::{Host, RefreshRequest, StartError};
use crate::state::HostState;

impl Host for HostState {
    fn start(&mut self, request: RefreshRequest) -> Result<(), StartError> {
        self.record("refresh.start", &request);
        Err(StartError::NotConfigured(format!(
            "no refresh configured for site {}",
            request.site
        )))
    }
}
