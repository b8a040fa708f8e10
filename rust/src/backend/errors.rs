//! What backend failures mean: HTTP statuses, object_store errors and OS errors sorted into
//! the engine's error kinds.

use super::fs::LinkError;
use crate::errors::{Error, Kind};

/// Classify from an HTTP status, as S3-compatible servers answer.
pub fn kind_for_status(status: u16, body: &str) -> Kind {
    match status {
        401 | 403 => Kind::Auth,
        404 => Kind::NotFound,
        // Our requests send preconditions only to pin the source's version (If-Match).
        412 => Kind::Changed,
        408 | 429 => Kind::Transient,
        500..=599 => Kind::Transient,
        // Some servers throttle with 400/503 and a SlowDown code in the body.
        _ if body.contains("SlowDown") || body.contains("RequestTimeout") => Kind::Transient,
        _ => Kind::Fatal,
    }
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        use object_store::Error as E;
        // object_store's Display stops at its own words ("error sending request"); the cause
        // underneath (refused connection, untrusted certificate) is what a user can act on.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        let mut os: Option<&std::io::Error> = None;
        let mut link = false;
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            link |= cause.downcast_ref::<LinkError>().is_some();
            os = os.or_else(|| cause.downcast_ref::<std::io::Error>().filter(|io| io.raw_os_error().is_some()));
            source = cause.source();
        }
        let cause = if link {
            Some("symlink".to_string())
        } else if let Some(n) = os.and_then(|io| io.raw_os_error()) {
            Some(errno_name(n))
        } else {
            xml_value(&message, "Code").map(str::to_string)
        };
        let kind = match &e {
            E::NotFound { .. } => Kind::NotFound,
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => Kind::Auth,
            E::AlreadyExists { .. } => Kind::AlreadyExists,
            E::Precondition { .. } => Kind::Precondition,
            E::NotModified { .. } => Kind::Fatal,
            E::NotSupported { .. } | E::NotImplemented { .. } | E::InvalidPath { .. } => Kind::Fatal,
            E::UnknownConfigurationKey { .. } => Kind::Fatal,
            _ if link => Kind::Fatal,
            // A local disk's answer does not change by asking again (except an interrupted call).
            E::Generic { store: "file", .. } => match os.map(|io| io.kind()) {
                Some(std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut) => Kind::Transient,
                _ => Kind::Fatal,
            },
            _ => classify_message(&message),
        };
        Error { kind, message: tidy(&message), cause }
    }
}

/// The errno's symbolic name for the errors a copy meets, else `errno N`.
fn errno_name(n: i32) -> String {
    let name = match n {
        libc::ENOSPC => "ENOSPC",
        libc::EDQUOT => "EDQUOT",
        libc::EROFS => "EROFS",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::ELOOP => "ELOOP",
        libc::EIO => "EIO",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => return format!("errno {n}"),
    };
    name.to_string()
}

/// object_store reports most HTTP failures as `Generic` with the status in the text, after
/// its own retries. The words it uses are stable enough to sort them.
fn classify_message(message: &str) -> Kind {
    let m = message.to_ascii_lowercase();
    if m.contains("no space left on device") || m.contains("os error 28") {
        Kind::Fatal // a full disk stays full: retrying only delays the message
    } else if m.contains("invalidaccesskeyid")
        || m.contains("signaturedoesnotmatch")
        || m.contains("accessdenied")
        || m.contains("status 403")
        || m.contains("status 401")
    {
        Kind::Auth
    } else if m.contains("nosuchbucket") || m.contains("status 404") {
        Kind::NotFound
    } else if m.contains("status 4") && !m.contains("status 408") && !m.contains("status 429") {
        Kind::Fatal
    } else {
        Kind::Transient
    }
}

/// object_store errors repeat themselves through nested sources and quote whole XML
/// bodies; keep one line with the request and the server's code and message.
fn tidy(message: &str) -> String {
    let flat = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = flat.strip_prefix("Generic S3 error: ").or_else(|| flat.strip_prefix("Generic file error: ")).unwrap_or(&flat).to_string();
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
        assert_eq!(kind_for_status(403, ""), Kind::Auth);
        assert_eq!(kind_for_status(404, "NoSuchKey"), Kind::NotFound);
        assert_eq!(kind_for_status(503, "SlowDown"), Kind::Transient);
        assert_eq!(kind_for_status(400, "<Code>SlowDown</Code>"), Kind::Transient);
        assert_eq!(kind_for_status(400, "InvalidRequest"), Kind::Fatal);
    }

    #[test]
    fn tidy_keeps_the_code() {
        let m = "Generic S3 error: Error performing GET http://h/b in 1ms - Server returned non-2xx status code: 403 Forbidden: <?xml?>\n <Error><Code>SignatureDoesNotMatch</Code><Message>Check your key</Message></Error>";
        assert_eq!(tidy(m), "Error performing GET http://h/b in 1ms: SignatureDoesNotMatch: Check your key");
    }

    #[test]
    fn conditional_writes() {
        let stale = object_store::Error::Precondition { path: "k".into(), source: "etag mismatch".into() };
        assert_eq!(Error::from(stale).kind, Kind::Precondition);
        let taken = object_store::Error::AlreadyExists { path: "k".into(), source: "exists".into() };
        assert_eq!(Error::from(taken).kind, Kind::AlreadyExists);
    }

    #[test]
    fn messages() {
        assert_eq!(classify_message("Client error with status 403 Forbidden: InvalidAccessKeyId"), Kind::Auth);
        assert_eq!(classify_message("error sending request: connection refused"), Kind::Transient);
        assert_eq!(classify_message("Client error with status 400 Bad Request"), Kind::Fatal);
        assert_eq!(classify_message("NoSuchBucket: the bucket does not exist"), Kind::NotFound);
        assert_eq!(classify_message("Unable to write: No space left on device (os error 28)"), Kind::Fatal);
    }
}
