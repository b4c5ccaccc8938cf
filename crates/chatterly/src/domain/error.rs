//! What can go wrong, in domain words. `http::error` maps each variant to the
//! contract's status code and body in one place; the cable maps them to a
//! rejected subscription or silence.

use chatterly_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Authentication failed (missing, invalid, expired or revoked token; bad
    /// login). The text is the contract's 401 message.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A policy denied the action.
    #[error("not authorized")]
    Forbidden,
    #[error("not found")]
    NotFound,
    /// Validation failed; full messages in the reference's style
    /// ("Content can't be blank").
    #[error("invalid: {0:?}")]
    Invalid(Vec<String>),
    /// The request is well-formed but cannot be applied now
    /// (e.g. "Call is no longer ringing").
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    /// The request itself is malformed: a required wrapper is missing (`None`,
    /// the contract's generic body) or the body/query cannot be read.
    #[error("bad request: {0:?}")]
    BadRequest(Option<String>),
    #[error("payload too large")]
    PayloadTooLarge,
    /// An upload went past `--max-upload-bytes`.
    #[error("file too large (limit {limit} bytes)")]
    FileTooLarge { limit: u64 },
    /// An upload would take its uploader past `--upload-quota-bytes`.
    #[error("upload quota exceeded ({quota} bytes)")]
    QuotaExceeded { quota: u64 },
    /// A `Range` outside a download of `size` bytes.
    #[error("range not satisfiable (size {size})")]
    RangeNotSatisfiable { size: u64 },
    #[error("rate limited: {0}")]
    RateLimited(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl DomainError {
    pub fn invalid(message: impl Into<String>) -> DomainError {
        DomainError::Invalid(vec![message.into()])
    }

    pub fn bad_request(message: impl Into<String>) -> DomainError {
        DomainError::BadRequest(Some(message.into()))
    }
}

impl From<StoreError> for DomainError {
    fn from(error: StoreError) -> DomainError {
        match error {
            StoreError::NotFound => DomainError::NotFound,
            // Each conflict the domain can cause is mapped where it happens, with the
            // right message; one that reaches here is a lost race on a row that
            // appeared meanwhile.
            StoreError::Conflict(what) => {
                DomainError::invalid(format!("{what} conflicts with an existing record"))
            }
            StoreError::Backend(message) => DomainError::Internal(message),
        }
    }
}

pub type DomainResult<T> = Result<T, DomainError>;
