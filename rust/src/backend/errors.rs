//! What backend failures mean: HTTP statuses, S3 error codes, object_store errors, OS errors
//! and TLS failures, each given the engine's stable error code. Every code is decided from a
//! status, a protocol field or an error's type where one exists; object_store's wording is the
//! last resort, for statuses it keeps only in its text.

use super::fs::{BadKey, KeyClash, LinkError};
use super::get_client::GetError;
use crate::errors::{Code, Error};

/// The code of an S3-compatible answer: its HTTP status and the `<Code>` of its error body.
pub fn code_for_status(status: u16, s3_code: Option<&str>) -> Code {
    match status {
        401 | 403 => auth_code(s3_code),
        404 if s3_code == Some("NoSuchBucket") => Code::NoSuchBucket,
        404 => Code::NotFound,
        // Our requests send preconditions only to pin the source's version (If-Match).
        412 => Code::Changed,
        408 => Code::Timeout,
        429 => Code::Throttled,
        500..=599 if s3_code == Some("SlowDown") => Code::Throttled,
        500..=599 => Code::ServerError,
        // Some servers throttle with a 400 and a SlowDown code in the body.
        _ => s3_code.and_then(code_for_s3).filter(|c| c.transient() || *c == Code::Corrupt).unwrap_or(Code::Refused),
    }
}

/// The codes S3 error bodies name that the engine tells apart.
fn code_for_s3(s3_code: &str) -> Option<Code> {
    Some(match s3_code {
        "NoSuchBucket" => Code::NoSuchBucket,
        "NoSuchKey" => Code::NotFound,
        "AccessDenied" => Code::AccessDenied,
        "InvalidAccessKeyId" => Code::InvalidAccessKey,
        "SignatureDoesNotMatch" => Code::SignatureMismatch,
        "ExpiredToken" | "TokenRefreshRequired" => Code::ExpiredToken,
        "SlowDown" => Code::Throttled,
        // The body's checksum (or SHA-256) is not the one the request states: damaged on the way.
        "BadDigest" | "XAmzContentChecksumMismatch" => Code::Corrupt,
        "RequestTimeout" => Code::Timeout,
        "InternalError" | "ServiceUnavailable" => Code::ServerError,
        _ => return None,
    })
}

/// A refusal of the credentials, by the reason the store gave.
fn auth_code(s3_code: Option<&str>) -> Code {
    s3_code
        .and_then(code_for_s3)
        .filter(|c| {
            matches!(c, Code::AccessDenied | Code::InvalidAccessKey | Code::SignatureMismatch | Code::ExpiredToken)
        })
        .unwrap_or(Code::Auth)
}

/// A credential provider had none to give: nothing is configured, and the instance metadata
/// service object_store falls back to did not answer with any. Wraps the provider's error,
/// shown as it is.
#[derive(Debug)]
pub struct NoCredentials(pub Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for NoCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for NoCredentials {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// The code of a failure on the way to the server, found in an error's chain of causes
/// (rustls' certificate errors, reqwest's errors, object_store's HTTP errors), else None.
pub fn network_code(error: &(dyn std::error::Error + 'static)) -> Option<Code> {
    if causes(error).any(|e| matches!(e.downcast_ref::<rustls::Error>(), Some(rustls::Error::InvalidCertificate(_)))) {
        return Some(Code::TlsUntrusted);
    }
    // reqwest's own error knows a connect timeout (unreachable) from a read timeout.
    if let Some(r) = causes(error).find_map(|e| e.downcast_ref::<reqwest::Error>()) {
        return Some(if r.is_connect() {
            Code::Unreachable
        } else if r.is_timeout() {
            Code::Timeout
        } else {
            Code::Transient
        });
    }
    // Our GETs' client (get_client.rs): a connection that failed, or a silence.
    if let Some(g) = causes(error).find_map(|e| e.downcast_ref::<GetError>()) {
        return Some(match g {
            GetError::Http(h) if h.is_connect() => Code::Unreachable,
            GetError::Http(_) => Code::Transient,
            GetError::Silent => Code::Timeout,
        });
    }
    causes(error).find_map(|e| e.downcast_ref::<object_store::client::HttpError>()).map(|h| {
        use object_store::client::HttpErrorKind as K;
        match h.kind() {
            K::Connect => Code::Unreachable,
            K::Timeout => Code::Timeout,
            _ => Code::Transient,
        }
    })
}

/// An error and every error under it. An io::Error's `source` skips the error it wraps (the
/// TLS stack's certificate error, say): that one is looked into too.
fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
        Some(wrapped) => Some(wrapped as &(dyn std::error::Error + 'static)),
        None => e.source(),
    })
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        use object_store::Error as E;
        // object_store's Display stops at its own words ("error sending request"); the cause
        // underneath (refused connection, untrusted certificate) is what a user can act on.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        let mut os: Option<&std::io::Error> = None;
        let (mut link, mut bad_key, mut clash, mut no_credentials) = (false, false, false, false);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            link |= cause.downcast_ref::<LinkError>().is_some();
            bad_key |= cause.downcast_ref::<BadKey>().is_some();
            clash |= cause.downcast_ref::<KeyClash>().is_some();
            no_credentials |= cause.downcast_ref::<NoCredentials>().is_some();
            os = os.or_else(|| cause.downcast_ref::<std::io::Error>().filter(|io| io.raw_os_error().is_some()));
            source = cause.source();
        }
        // The error body of an S3 answer object_store quotes: a protocol field, not wording.
        let s3_code = xml_value(&message, "Code");
        let code = match &e {
            E::NotFound { .. } if s3_code == Some("NoSuchBucket") => Code::NoSuchBucket,
            E::NotFound { .. } => Code::NotFound,
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => auth_code(s3_code),
            E::AlreadyExists { .. } => Code::AlreadyExists,
            E::Precondition { .. } => Code::Precondition,
            E::NotModified { .. } => Code::Other,
            E::NotSupported { .. } | E::NotImplemented { .. } => Code::Unsupported,
            E::InvalidPath { .. } => Code::BadKey,
            E::UnknownConfigurationKey { .. } => Code::Config,
            _ if link => Code::Symlink,
            _ if bad_key => Code::BadKey,
            _ if clash => Code::KeyClash,
            _ if no_credentials => Code::NoCredentials,
            // A local disk's answer does not change by asking again (except an interrupted call).
            E::Generic { store: "file", .. } => os.map_or(Code::Io, os_code),
            _ => std::error::Error::source(&e)
                .and_then(network_code)
                .or_else(|| s3_code.and_then(code_for_s3))
                .unwrap_or_else(|| code_for_message(&message)),
        };
        Error { code, message: tidy(&message) }
    }
}

/// The code of an OS error on a local file.
fn os_code(io: &std::io::Error) -> Code {
    match io.raw_os_error() {
        Some(libc::ENOSPC) => Code::DiskFull,
        Some(libc::EDQUOT) => Code::QuotaExceeded,
        Some(libc::EROFS) => Code::ReadOnly,
        Some(libc::EACCES) => Code::PermissionDenied,
        Some(libc::EPERM) => Code::NotPermitted,
        Some(libc::ENOENT) => Code::NotFound,
        _ => match io.kind() {
            std::io::ErrorKind::Interrupted => Code::Transient,
            std::io::ErrorKind::TimedOut => Code::Timeout,
            _ => Code::Io,
        },
    }
}

/// object_store keeps the status of the failures it reports as `Generic` (after its own
/// retries) only in its text, as "status code: 503". Anything else is worth another try.
fn code_for_message(message: &str) -> Code {
    let status = message
        .split("status code: ")
        .nth(1)
        .and_then(|rest| rest.get(..3))
        .and_then(|digits| digits.parse::<u16>().ok());
    match status {
        Some(status) => code_for_status(status, None),
        None => Code::Transient,
    }
}

/// object_store errors repeat themselves through nested sources and quote whole XML
/// bodies; keep one line with the request and the server's code and message.
fn tidy(message: &str) -> String {
    let flat = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = flat
        .strip_prefix("Generic S3 error: ")
        .or_else(|| flat.strip_prefix("Generic file error: "))
        .unwrap_or(&flat)
        .to_string();
    match (xml_value(&flat, "Code"), flat.find(" - Server returned")) {
        (Some(code), Some(cut)) => {
            let head = &flat[..cut];
            let detail = xml_value(&flat, "Message").map(|m| format!(": {m}")).unwrap_or_default();
            format!("{head}: {code}{detail}")
        }
        _ => flat,
    }
}

pub fn xml_value<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    Some(&text[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(code_for_status(403, None), Code::Auth);
        assert_eq!(code_for_status(403, Some("SignatureDoesNotMatch")), Code::SignatureMismatch);
        assert_eq!(code_for_status(403, Some("AccessDenied")), Code::AccessDenied);
        assert_eq!(code_for_status(403, Some("SlowDown")), Code::Auth);
        assert_eq!(code_for_status(404, Some("NoSuchKey")), Code::NotFound);
        assert_eq!(code_for_status(404, Some("NoSuchBucket")), Code::NoSuchBucket);
        assert_eq!(code_for_status(503, Some("SlowDown")), Code::Throttled);
        assert_eq!(code_for_status(503, None), Code::ServerError);
        assert_eq!(code_for_status(400, Some("SlowDown")), Code::Throttled);
        assert_eq!(code_for_status(400, Some("RequestTimeout")), Code::Timeout);
        assert_eq!(code_for_status(400, Some("InvalidRequest")), Code::Refused);
        assert_eq!(code_for_status(400, Some("NoSuchBucket")), Code::Refused);
    }

    #[test]
    fn tidy_keeps_the_code() {
        let m = "Generic S3 error: Error performing GET http://h/b in 1ms - Server returned non-2xx status code: 403 Forbidden: <?xml?>\n <Error><Code>SignatureDoesNotMatch</Code><Message>Check your key</Message></Error>";
        assert_eq!(tidy(m), "Error performing GET http://h/b in 1ms: SignatureDoesNotMatch: Check your key");
    }

    #[test]
    fn conditional_writes() {
        let stale = object_store::Error::Precondition { path: "k".into(), source: "etag mismatch".into() };
        assert_eq!(Error::from(stale).code, Code::Precondition);
        let taken = object_store::Error::AlreadyExists { path: "k".into(), source: "exists".into() };
        assert_eq!(Error::from(taken).code, Code::AlreadyExists);
    }

    #[test]
    fn os_errors_of_the_file_store() {
        let file = |errno: i32| object_store::Error::Generic {
            store: "file",
            source: Box::new(std::io::Error::from_raw_os_error(errno)),
        };
        for (errno, code) in [
            (libc::ENOSPC, Code::DiskFull),
            (libc::EDQUOT, Code::QuotaExceeded),
            (libc::EROFS, Code::ReadOnly),
            (libc::EACCES, Code::PermissionDenied),
            (libc::EPERM, Code::NotPermitted),
            (libc::EIO, Code::Io),
            (libc::EINTR, Code::Transient),
        ] {
            assert_eq!(Error::from(file(errno)).code, code, "errno {errno}");
        }
    }

    #[test]
    fn statuses_object_store_keeps_in_its_text() {
        assert_eq!(
            code_for_message(
                "Error performing PUT http://h/b/k in 2s - Server returned non-2xx status code: 400 Bad Request: "
            ),
            Code::Refused
        );
        assert_eq!(
            code_for_message(
                "Error performing GET http://h/b - Server returned non-2xx status code: 503 Service Unavailable"
            ),
            Code::ServerError
        );
        assert_eq!(code_for_message("error decoding response body"), Code::Transient);
    }
}
