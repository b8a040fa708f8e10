//! One error type for the engine, with a stable code that says what went wrong.
//!
//! The code is set where an error is classified (backend/errors.rs for what stores answer,
//! the copy for what it checks itself) and is all Python decides on: messages are for people
//! and quote the stores' own words, which change with their versions.

use std::fmt;

/// Declares each code once: its variant, its stable name and what it means.
macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What went wrong. The names (`Code::name`) are part of the engine's interface: Python
        /// reads them from `EngineError.code` and from copy results' `error_code`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }
        }
    };
}

codes! {
    /// The object does not exist.
    NotFound => "not_found",
    /// The bucket does not exist.
    NoSuchBucket => "no_such_bucket",
    /// The store rejected the credentials, for a reason it did not name.
    Auth => "auth",
    /// The access key is unknown to the store (S3 InvalidAccessKeyId).
    InvalidAccessKey => "invalid_access_key",
    /// The secret does not match the access key (S3 SignatureDoesNotMatch).
    SignatureMismatch => "signature_mismatch",
    /// The session token has expired (S3 ExpiredToken).
    ExpiredToken => "expired_token",
    /// The credentials are valid but not allowed to do this (S3 AccessDenied, HTTP 403).
    AccessDenied => "access_denied",
    /// None were configured and the instance metadata service gave none.
    NoCredentials => "no_credentials",
    /// No connection: refused, no such host, connect timeout.
    Unreachable => "unreachable",
    /// The server's TLS certificate failed verification.
    TlsUntrusted => "tls_untrusted",
    /// A request got no answer in time.
    Timeout => "timeout",
    /// The store asked to slow down (SlowDown, HTTP 429).
    Throttled => "throttled",
    /// The store failed (HTTP 5xx).
    ServerError => "server_error",
    /// Another failure a retry may fix: a connection dropped, an answer cut short.
    Transient => "transient",
    /// No space left on the device.
    DiskFull => "disk_full",
    /// The disk quota is exceeded.
    QuotaExceeded => "quota_exceeded",
    /// The file system is read-only.
    ReadOnly => "read_only",
    /// The OS denied access to a file or folder (EACCES).
    PermissionDenied => "permission_denied",
    /// The OS does not permit the operation (EPERM).
    NotPermitted => "not_permitted",
    /// Another OS error on a local file.
    Io => "io",
    /// The path crosses a symbolic link or a special file, which is never followed.
    Symlink => "symlink",
    /// The key cannot be addressed in this store.
    BadKey => "bad_key",
    /// A folder cannot hold this key beside another: an object `a` and objects under `a/`,
    /// which S3 holds at once.
    KeyClash => "key_clash",
    /// Bytes read back differ from bytes sent.
    Corrupt => "corrupt",
    /// The source object was replaced while it was being read.
    Changed => "changed",
    /// A conditional write found the key taken.
    AlreadyExists => "already_exists",
    /// A conditional write on a version found another version, or none.
    Precondition => "precondition",
    /// The endpoint answered, but not like the store it should be (a web page, not S3 XML).
    Protocol => "protocol",
    /// The store cannot be opened as configured (URL, options, CA file).
    Config => "config",
    /// The store cannot do this (a conditional write on a Python store, say).
    Unsupported => "unsupported",
    /// The store refused the request (another HTTP 4xx).
    Refused => "refused",
    /// Stopped by the caller.
    Cancelled => "cancelled",
    /// Anything else.
    Other => "other",
}

impl Code {
    /// Worth another attempt at the whole job: the store may answer next time, and a copy
    /// that read damaged bytes or a replaced source is redone from the start.
    pub fn retryable(self) -> bool {
        self.transient() || matches!(self, Code::Corrupt | Code::Changed)
    }

    /// The store or the way to it failed in a way a retry may fix.
    pub fn transient(self) -> bool {
        matches!(self, Code::Unreachable | Code::Timeout | Code::Throttled | Code::ServerError | Code::Transient)
    }
}

#[derive(Debug, Clone)]
pub struct Error {
    pub code: Code,
    pub message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error { code, message: message.into() }
    }
    pub fn cancelled() -> Self {
        Error::new(Code::Cancelled, "cancelled")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_with_its_own_name() {
        let names: std::collections::BTreeSet<&str> = Code::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Code::ALL.len());
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }
}
