//! Object keys as object_store spells them.

use object_store::path::Path;

use crate::errors::{Code, Error, Result};

/// object_store's name for a key. Keys it cannot spell (control characters, empty or `.`
/// segments) fail that object only, and the message says how to leave them out. A leading or
/// trailing `/` would be dropped, silently addressing another key: refused too.
pub fn path(key: &str) -> Result<Path> {
    let unaddressable = |why: String| {
        Error::new(Code::BadKey, format!("object key {key:?} cannot be addressed ({why}); --exclude skips it"))
    };
    if key.starts_with('/') || key.ends_with('/') {
        return Err(unaddressable("a leading or trailing /".into()));
    }
    // object_store's own message quotes the key raw: a newline in it would break the line.
    Path::parse(key).map_err(|_| {
        unaddressable(
            if key.split('/').any(str::is_empty) {
                "an empty path segment"
            } else if key.split('/').any(|s| s == "." || s == "..") {
                "a `.` or `..` segment"
            } else {
                "a control character"
            }
            .into(),
        )
    })
}
