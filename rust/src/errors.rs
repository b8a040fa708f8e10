//! One error type for the engine, classified by what the caller should do about it.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The object or bucket does not exist: retrying cannot help.
    NotFound,
    /// Credentials rejected or missing permissions: retrying cannot help.
    Auth,
    /// Throttling, 5xx, timeouts, dropped connections: worth another attempt.
    Transient,
    /// Bytes read back differ from bytes sent: worth another attempt (the copy is redone).
    Corrupt,
    /// The source object was replaced while it was being read: worth another attempt, which
    /// copies whatever version is there then, whole.
    Changed,
    /// A conditional write found the key taken.
    AlreadyExists,
    /// A conditional write on a version found another version, or none.
    Precondition,
    /// Anything else the store refused (bad request, precondition, ...).
    Fatal,
    /// Stopped by the caller.
    Cancelled,
    /// The endpoint answered, but not like the store it should be (a web page, not S3 XML).
    Protocol,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::NotFound => "not_found",
            Kind::Auth => "auth",
            Kind::Transient => "transient",
            Kind::Corrupt => "corrupt",
            Kind::Changed => "changed",
            Kind::AlreadyExists => "already_exists",
            Kind::Precondition => "precondition",
            Kind::Fatal => "fatal",
            Kind::Cancelled => "cancelled",
            Kind::Protocol => "protocol",
        }
    }
    pub fn retryable(self) -> bool {
        matches!(self, Kind::Transient | Kind::Corrupt | Kind::Changed)
    }
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    /// What went wrong, without the object: an errno name (`EROFS`), an S3 error code
    /// (`NoSuchBucket`), `symlink`, `bad_key`. Failures of many objects with one cause are
    /// reported once.
    pub cause: Option<String>,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), cause: None }
    }
    pub fn with_cause(mut self, cause: impl Into<String>) -> Self {
        self.cause = Some(cause.into());
        self
    }
    pub fn cancelled() -> Self {
        Error::new(Kind::Cancelled, "cancelled")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
