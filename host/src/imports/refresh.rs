//! `refresh`: queueing refreshes. With a [`Refresher`] attached to the pool
//! the request is queued for the background worker and the call returns at
//! once; without one every request is `not-configured`.
//!
//! [`Refresher`]: crate::lifecycle::Refresher

use crate::bindings::refresh::{Host, RefreshRequest, StartError};
use crate::state::HostState;

impl Host for HostState {
    fn start(&mut self, request: RefreshRequest) -> Result<(), StartError> {
        self.record("refresh.start", &request);
        match &self.refresher {
            Some(r) => r.start(request),
            None => Err(StartError::NotConfigured(format!(
                "no refresh configured for site {}",
                request.site
            ))),
        }
    }
}
