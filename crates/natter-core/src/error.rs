//! Errors the core returns to faces. Each maps to one code of the wire catalog.

use natter_protocol::{ErrorCode, WireError};

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The caller's request is wrong; the message is for the client.
    #[error("{0}")]
    Rejected(WireError),
    /// A store or bus failure. The request was not applied and may be retried.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl CoreError {
    pub fn rejected(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Rejected(WireError::new(code, message))
    }

    /// The error as a client sees it. Backend failures are not detailed to clients.
    pub fn to_wire(&self) -> WireError {
        match self {
            Self::Rejected(e) => e.clone(),
            Self::Unavailable(_) => WireError::new(
                ErrorCode::Unavailable,
                "the server could not complete the request right now; try again",
            ),
        }
    }
}

impl From<crate::store::StoreError> for CoreError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<crate::bus::BusError> for CoreError {
    fn from(e: crate::bus::BusError) -> Self {
        Self::Unavailable(e.to_string())
    }
}
