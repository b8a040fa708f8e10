//! The `file://` store: a folder whose keys never lead outside it.
//!
//! object_store's LocalFileSystem follows symbolic links (it lists with `follow_links(true)` and
//! lets the kernel resolve every path), so a link inside a backup made `delete` remove the files
//! it pointed to, and a linked destination folder made `copy` write outside the destination.
//! Here the root, as the user named it, is resolved and opened once; below it every path is
//! walked one component at a time, each step an `openat(.., O_NOFOLLOW)` relative to the folder
//! opened before it. No link is ever followed and nothing outside the root can be reached,
//! whatever changes on disk between two steps. (`openat2` with RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS gives the same guarantee in one call, but needs Linux 5.6 and is refused
//! by the seccomp profiles of many container runtimes; the walk works on any POSIX system, for
//! one system call per path component.) Listings skip links and special files and remember them
//! (`take_skipped`), so a command can say once what it left out.
//!
//! Writes are staged in `<name>#<n>` beside the target (object_store's convention, so leftovers
//! of both are found alike), held under an exclusive flock while being written so that a live
//! upload is never mistaken for a leftover, and renamed into place. Every change to a folder's
//! entries is made under an exclusive flock on that folder, which makes `PutMode::Update` a
//! compare-and-swap on the e_tag without any extra file.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

use crate::tasks;

const STORE: &str = "file";

/// A key whose path crosses a symbolic link (or a special file): never followed.
#[derive(Debug)]
pub struct LinkError {
    pub key: String,
    pub link: String,
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the path crosses the symbolic link {}, which mbackup never follows (remove the link, or name the \
             folder it points to directly)",
            self.key, self.link
        )
    }
}

impl std::error::Error for LinkError {}

/// Keys a folder cannot hold side by side: S3 holds an object `a` and objects under `a/`
/// at once, but in a folder `a` cannot be both a file and a folder.
#[derive(Debug)]
pub struct KeyClash {
    pub key: String,
    /// The key that is an object in one store and a folder in the other.
    pub file: String,
}

impl std::fmt::Display for KeyClash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: in a folder, an object {} and objects under {}/ cannot both exist (S3 can hold both); --exclude \
             skips one of them",
            self.key, self.file, self.file
        )
    }
}

impl std::error::Error for KeyClash {}

/// A key no file can have: empty segments, `.` or `..`, a NUL, or a staging name.
#[derive(Debug)]
pub struct BadKey(String, &'static str);

impl std::fmt::Display for BadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "object key {:?} cannot be a file name ({}); --exclude skips it", self.0, self.1)
    }
}

impl std::error::Error for BadKey {}

fn generic(e: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
    object_store::Error::Generic { store: STORE, source: Box::new(e) }
}

fn io_error(key: &str, e: io::Error) -> object_store::Error {
    match e.kind() {
        io::ErrorKind::NotFound => object_store::Error::NotFound { path: key.to_string(), source: Box::new(e) },
        _ => generic(KeyIo(key.to_string(), e)),
    }
}

/// An OS error on one key, with the key in the message and the io::Error as its source.
#[derive(Debug)]
struct KeyIo(String, io::Error);

impl std::fmt::Display for KeyIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0, self.1)
    }
}

impl std::error::Error for KeyIo {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.1)
    }
}

/// What listings left out, by store root: links and special files. Drained by the CLI, which
/// says once per root what was skipped.
fn skipped_registry() -> &'static Mutex<BTreeMap<String, BTreeSet<String>>> {
    static SKIPPED: OnceLock<Mutex<BTreeMap<String, BTreeSet<String>>>> = OnceLock::new();
    SKIPPED.get_or_init(Default::default)
}

/// Every (root, key) skipped by a listing since the last call.
pub fn take_skipped() -> Vec<(String, String)> {
    let mut reg = skipped_registry().lock().unwrap();
    let out = reg.iter().flat_map(|(root, keys)| keys.iter().map(move |k| (root.clone(), k.clone()))).collect();
    reg.clear();
    out
}

/// `name#<digits>`: a staging file, not an object.
pub fn staging_target(name: &str) -> Option<&str> {
    let (base, n) = name.rsplit_once('#')?;
    (!base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(base)
}

fn cstr(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn openat(dir: RawFd, name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    loop {
        let fd =
            unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOFOLLOW, mode as libc::c_uint) };
        if fd >= 0 {
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn lstatat(dir: RawFd, name: &str) -> io::Result<libc::stat> {
    let c = cstr(name)?;
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstatat(dir, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn is_file(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

fn is_link(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

/// An exclusive flock, released when dropped (or when the process dies).
struct Flock<'a>(&'a OwnedFd);

impl<'a> Flock<'a> {
    fn exclusive(fd: &'a OwnedFd) -> io::Result<Self> {
        loop {
            match cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) }) {
                Ok(_) => return Ok(Flock(fd)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// None when another process holds it.
    fn try_exclusive(fd: &'a OwnedFd) -> io::Result<Option<Self>> {
        match cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
            Ok(_) => Ok(Some(Flock(fd))),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn etag_of(st: &libc::stat) -> String {
    let nanos = st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128;
    format!("{:x}-{:x}-{:x}", st.st_ino, nanos, st.st_size)
}

/// The version (the ETag a listing gives) of an open file, as it is now.
pub fn version_of(file: &File) -> io::Result<String> {
    fstat(file.as_raw_fd()).map(|st| etag_of(&st))
}

fn modified(st: &libc::stat) -> DateTime<Utc> {
    DateTime::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32).unwrap_or_default()
}

fn meta_of(key: &str, st: &libc::stat) -> Result<ObjectMeta> {
    Ok(ObjectMeta {
        location: Path::parse(key)?,
        last_modified: modified(st),
        size: st.st_size as u64,
        e_tag: Some(etag_of(st)),
        version: None,
    })
}

/// One entry a listing found: an object, a staging file, or something skipped.
pub struct Entry {
    pub key: String,
    pub size: u64,
    pub e_tag: String,
    pub modified: DateTime<Utc>,
}

/// A staging file nobody is writing: what an interrupted upload left.
pub struct Leftover {
    /// The key the upload was writing.
    pub key: String,
    /// The staging file's own key (`<key>#<n>`).
    pub staging: String,
    pub size: u64,
    pub started: DateTime<Utc>,
}

#[derive(Debug)]
pub struct FileStore {
    root: OwnedFd,
    /// The root as resolved when opened, for messages.
    display: String,
}

impl std::fmt::Display for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileStore({})", self.display)
    }
}

impl FileStore {
    /// Open the folder at `root`; links in `root` itself are resolved, once.
    pub fn open(root: &str) -> io::Result<FileStore> {
        let path = std::fs::canonicalize(root)?;
        let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let fd = cvt(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
        Ok(FileStore { root: unsafe { OwnedFd::from_raw_fd(fd) }, display: path.to_string_lossy().into_owned() })
    }

    fn segments(key: &str) -> std::result::Result<Vec<&str>, BadKey> {
        if key.is_empty() {
            return Ok(vec![]);
        }
        let parts: Vec<&str> = key.split('/').collect();
        for p in &parts {
            let why = match *p {
                "" => Some("an empty path segment"),
                "." | ".." => Some("a `.` or `..` segment"),
                _ if p.contains('\0') => Some("a NUL character"),
                _ => None,
            };
            if let Some(why) = why {
                return Err(BadKey(key.to_string(), why));
            }
        }
        Ok(parts)
    }

    /// The folder `dirs` names under the root, walked without following links; missing
    /// folders are made when `create`. Errors name the key and the link met.
    fn walk(&self, key: &str, dirs: &[&str], create: bool) -> Result<OwnedFd> {
        // Every walk opens its own descriptions, never dups: flocks and read positions belong
        // to an open file description, so dups of the root would share them.
        let mut fd =
            openat(self.root.as_raw_fd(), ".", libc::O_RDONLY | libc::O_DIRECTORY, 0).map_err(|e| io_error(key, e))?;
        for (i, name) in dirs.iter().enumerate() {
            let next = match openat(fd.as_raw_fd(), name, libc::O_RDONLY | libc::O_DIRECTORY, 0) {
                Ok(next) => next,
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    match cvt(unsafe {
                        libc::mkdirat(fd.as_raw_fd(), cstr(name).map_err(|e| io_error(key, e))?.as_ptr(), 0o777)
                    }) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(io_error(key, e)),
                    }
                    openat(fd.as_raw_fd(), name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
                        .map_err(|e| self.not_followed(key, &fd, name, &dirs[..=i], e, create))?
                }
                Err(e) => return Err(self.not_followed(key, &fd, name, &dirs[..=i], e, create)),
            };
            fd = next;
        }
        Ok(fd)
    }

    /// Turn an open error into "crosses a link" when a link is what stopped it. A file where
    /// the key needs a folder means no such object, or, for a write (`create`), a clash.
    fn not_followed(
        &self,
        key: &str,
        dir: &OwnedFd,
        name: &str,
        upto: &[&str],
        e: io::Error,
        create: bool,
    ) -> object_store::Error {
        match lstatat(dir.as_raw_fd(), name) {
            Ok(st) if is_link(&st) => generic(LinkError { key: key.to_string(), link: upto.join("/") }),
            Ok(st) if !is_dir(&st) && !is_file(&st) => {
                generic(LinkError { key: key.to_string(), link: upto.join("/") })
            }
            Ok(st) if is_file(&st) && e.raw_os_error() == Some(libc::ENOTDIR) => match create {
                true => generic(KeyClash { key: key.to_string(), file: upto.join("/") }),
                false => io_error(key, io::Error::from(io::ErrorKind::NotFound)),
            },
            _ => io_error(key, e),
        }
    }

    fn parent_of<'k>(&self, key: &'k str, create: bool) -> Result<(OwnedFd, &'k str)> {
        let parts = Self::segments(key).map_err(generic)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Err(generic(BadKey(key.to_string(), "no file name")));
        };
        if staging_target(name).is_some() {
            return Err(generic(BadKey(key.to_string(), "`name#<digits>` is how unfinished writes are named")));
        }
        Ok((self.walk(key, dirs, create)?, name))
    }

    /// Open a regular file for reading; links and special files are refused.
    fn open_file(&self, key: &str) -> Result<(File, libc::stat)> {
        let (dir, name) = self.parent_of(key, false)?;
        // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        let fd = openat(dir.as_raw_fd(), name, libc::O_RDONLY | libc::O_NONBLOCK, 0)
            .map_err(|e| self.not_followed(key, &dir, name, &Self::segments(key).unwrap_or_default(), e, false))?;
        let st = fstat(fd.as_raw_fd()).map_err(|e| io_error(key, e))?;
        if is_dir(&st) {
            return Err(io_error(key, io::Error::from(io::ErrorKind::NotFound)));
        }
        if !is_file(&st) {
            return Err(generic(LinkError { key: key.to_string(), link: key.to_string() }));
        }
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) };
        Ok((File::from(fd), st))
    }

    /// A new staging file `<name>#<n>` in `dir`, locked while we write it.
    fn create_staging(key: &str, dir: &OwnedFd, name: &str) -> Result<(File, String)> {
        for n in 1u32.. {
            let staging = format!("{name}#{n}");
            match openat(dir.as_raw_fd(), &staging, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o666) {
                Ok(fd) => {
                    cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) }).map_err(|e| io_error(key, e))?;
                    return Ok((File::from(fd), staging));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error(key, e)),
            }
        }
        unreachable!()
    }

    /// Move the staged file into place under the folder's lock, as `mode` says.
    fn publish(key: &str, dir: &OwnedFd, staging: &str, name: &str, mode: &PutMode) -> Result<()> {
        let _lock = Flock::exclusive(dir).map_err(|e| io_error(key, e))?;
        let (from, to) = (cstr(staging).map_err(|e| io_error(key, e))?, cstr(name).map_err(|e| io_error(key, e))?);
        let d = dir.as_raw_fd();
        // A link (or anything but a file) in the target's place is neither written through
        // nor replaced: that object fails.
        match lstatat(d, name) {
            Ok(st) if is_dir(&st) => return Err(generic(KeyClash { key: key.to_string(), file: key.to_string() })),
            Ok(st) if !is_file(&st) => return Err(generic(LinkError { key: key.to_string(), link: key.to_string() })),
            _ => {}
        }
        match mode {
            PutMode::Overwrite => {}
            PutMode::Create => {
                return match cvt(unsafe { libc::linkat(d, from.as_ptr(), d, to.as_ptr(), 0) }) {
                    Ok(_) => {
                        unsafe { libc::unlinkat(d, from.as_ptr(), 0) };
                        Ok(())
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        Err(object_store::Error::AlreadyExists { path: key.to_string(), source: Box::new(e) })
                    }
                    Err(e) => Err(io_error(key, e)),
                };
            }
            PutMode::Update(version) => {
                let current = match lstatat(d, name) {
                    Ok(st) => etag_of(&st),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(object_store::Error::Precondition {
                            path: key.to_string(),
                            source: format!("{key} does not exist").into(),
                        })
                    }
                    Err(e) => return Err(io_error(key, e)),
                };
                if version.e_tag.as_deref() != Some(current.as_str()) {
                    return Err(object_store::Error::Precondition {
                        path: key.to_string(),
                        source: format!("{key} changed: e_tag {current} is not {:?}", version.e_tag).into(),
                    });
                }
            }
        }
        cvt(unsafe { libc::renameat(d, from.as_ptr(), d, to.as_ptr()) }).map_err(|e| io_error(key, e))?;
        Ok(())
    }

    fn put_blocking(&self, key: &str, payload: PutPayload, mode: PutMode) -> Result<PutResult> {
        let (dir, name) = self.parent_of(key, true)?;
        let (file, staging) = Self::create_staging(key, &dir, name)?;
        let written = (|| {
            write_all_at(&file, payload.iter().map(|c| c.as_ref()), 0).map_err(|e| io_error(key, e))?;
            let st = fstat(file.as_raw_fd()).map_err(|e| io_error(key, e))?;
            Self::publish(key, &dir, &staging, name, &mode)?;
            Ok(etag_of(&st))
        })();
        match written {
            Ok(e_tag) => Ok(PutResult { e_tag: Some(e_tag), version: None, extensions: Default::default() }),
            Err(e) => {
                if let Ok(c) = cstr(&staging) {
                    unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
                }
                Err(e)
            }
        }
    }

    fn delete_blocking(&self, key: &str) -> Result<()> {
        let (dir, name) = self.parent_of(key, false)?;
        let _lock = Flock::exclusive(&dir).map_err(|e| io_error(key, e))?;
        match lstatat(dir.as_raw_fd(), name) {
            Ok(st) if is_file(&st) => {}
            Ok(st) if is_dir(&st) => return Err(io_error(key, io::Error::from(io::ErrorKind::NotFound))),
            Ok(_) => return Err(generic(LinkError { key: key.to_string(), link: key.to_string() })),
            Err(e) => return Err(io_error(key, e)),
        }
        let c = cstr(name).map_err(|e| io_error(key, e))?;
        cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) }).map_err(|e| io_error(key, e))?;
        Ok(())
    }

    /// Names in an open folder, with lstat results, in name order.
    fn read_dir(dir: &OwnedFd) -> io::Result<Vec<(Vec<u8>, libc::stat)>> {
        // A fresh open of ".", not a dup: a dup shares the directory's read position with
        // every other dup of it (the root's, in other listings), so a second listing saw nothing.
        let dup = openat(dir.as_raw_fd(), ".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?.into_raw_fd();
        let stream = unsafe { libc::fdopendir(dup) };
        if stream.is_null() {
            let e = io::Error::last_os_error();
            unsafe { libc::close(dup) };
            return Err(e);
        }
        let mut out = Vec::new();
        let result = loop {
            unsafe { *libc::__errno_location() = 0 };
            let ent = unsafe { libc::readdir(stream) };
            if ent.is_null() {
                let errno = io::Error::last_os_error();
                break if errno.raw_os_error() == Some(0) { Ok(()) } else { Err(errno) };
            }
            let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes().to_vec();
            if name == b"." || name == b".." {
                continue;
            }
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            let c = CString::new(name.clone()).unwrap();
            if unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } == 0 {
                out.push((name, st));
            } // gone since readdir: nothing to list
        };
        unsafe { libc::closedir(stream) };
        result?;
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Everything under `prefix` (a folder key, "" for the root): objects and staging files,
    /// recursing when `recursive`, else one level with sub-folders as prefixes. Links, special
    /// files and names that are not UTF-8 are skipped and remembered.
    fn scan(&self, prefix: &str, recursive: bool) -> Result<(Vec<Entry>, Vec<Entry>, Vec<String>)> {
        let (mut objects, mut staging, mut dirs, mut skipped) = (vec![], vec![], vec![], BTreeSet::new());
        let parts = match Self::segments(prefix) {
            Ok(p) => p,
            Err(_) => return Ok((objects, staging, dirs)), // no folder has that name
        };
        let start = match self.walk(prefix, &parts, false) {
            Ok(fd) => fd,
            // Nothing is listed under a missing folder, nor under a file.
            Err(object_store::Error::NotFound { .. }) => return Ok((objects, staging, dirs)),
            Err(e) => {
                if let object_store::Error::Generic { source, .. } = &e {
                    if let Some(link) = source.downcast_ref::<LinkError>() {
                        skipped.insert(link.link.clone());
                        self.remember(skipped);
                        return Ok((objects, staging, dirs));
                    }
                }
                return Err(e);
            }
        };
        let mut todo = vec![(start, prefix.to_string())];
        while let Some((dir, base)) = todo.pop() {
            let entries = Self::read_dir(&dir).map_err(|e| io_error(&base, e))?;
            for (raw, st) in entries {
                let Ok(name) = std::str::from_utf8(&raw) else {
                    skipped.insert(format!("{}{}", join(&base, ""), String::from_utf8_lossy(&raw)));
                    continue;
                };
                let key = join(&base, name);
                if is_dir(&st) {
                    if recursive {
                        match openat(dir.as_raw_fd(), name, libc::O_RDONLY | libc::O_DIRECTORY, 0) {
                            Ok(fd) => todo.push((fd, key)),
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(_) => {
                                skipped.insert(key); // replaced by a link since read_dir
                            }
                        }
                    } else {
                        dirs.push(key);
                    }
                } else if is_file(&st) {
                    let entry = Entry { key, size: st.st_size as u64, e_tag: etag_of(&st), modified: modified(&st) };
                    if staging_target(name).is_some() {
                        staging.push(entry);
                    } else {
                        objects.push(entry);
                    }
                } else {
                    skipped.insert(key);
                }
            }
        }
        self.remember(skipped);
        objects.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok((objects, staging, dirs))
    }

    fn remember(&self, skipped: BTreeSet<String>) {
        if !skipped.is_empty() {
            skipped_registry().lock().unwrap().entry(format!("file://{}", self.display)).or_default().extend(skipped);
        }
    }

    /// Objects under `prefix`, recursively, in key order.
    pub fn list_entries(&self, prefix: &str) -> Result<Vec<Entry>> {
        Ok(self.scan(prefix, true)?.0)
    }

    /// Objects under `prefix`, and the sub-folders of its first level unless `recursive`.
    pub fn list_level(&self, prefix: &str, recursive: bool) -> crate::errors::Result<(Vec<Entry>, Vec<String>)> {
        let (objects, _, dirs) = self.scan(prefix, recursive)?;
        Ok((objects, dirs))
    }

    /// Staging files under `prefix` that no live writer holds.
    pub fn leftovers(&self, prefix: &str) -> crate::errors::Result<Vec<Leftover>> {
        let (_, staging, _) = self.scan(prefix, true)?;
        let mut out = vec![];
        for s in staging {
            if self.staging_in_use(&s.key)? == Some(false) {
                let (base, _) = s.key.rsplit_once('#').unwrap();
                out.push(Leftover { key: base.to_string(), staging: s.key, size: s.size, started: s.modified });
            }
        }
        Ok(out)
    }

    fn open_staging(&self, staging: &str) -> Result<Option<(OwnedFd, OwnedFd, String)>> {
        let parts = Self::segments(staging).map_err(generic)?;
        let Some((name, dirs)) = parts.split_last() else { return Ok(None) };
        if staging_target(name).is_none() {
            return Err(generic(BadKey(staging.to_string(), "not a staging file")));
        }
        let dir = match self.walk(staging, dirs, false) {
            Ok(d) => d,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        match openat(dir.as_raw_fd(), name, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
            Ok(fd) => Ok(Some((dir, fd, name.to_string()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(staging, e)),
        }
    }

    /// Some(true) while a writer holds the staging file, None when it is gone.
    fn staging_in_use(&self, staging: &str) -> Result<Option<bool>> {
        match self.open_staging(staging)? {
            None => Ok(None),
            Some((_dir, fd, _)) => {
                let held = Flock::try_exclusive(&fd).map_err(|e| io_error(staging, e))?;
                Ok(Some(held.is_none()))
            }
        }
    }

    /// Delete a staging file nobody is writing; false when in use or already gone.
    pub fn remove_leftover(&self, staging: &str) -> Result<bool> {
        let Some((dir, fd, name)) = self.open_staging(staging)? else { return Ok(false) };
        let Some(_held) = Flock::try_exclusive(&fd).map_err(|e| io_error(staging, e))? else { return Ok(false) };
        if !is_file(&fstat(fd.as_raw_fd()).map_err(|e| io_error(staging, e))?) {
            return Ok(false);
        }
        let _lock = Flock::exclusive(&dir).map_err(|e| io_error(staging, e))?;
        let c = cstr(&name).map_err(|e| io_error(staging, e))?;
        match cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) }) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(staging, e)),
        }
    }
}

/// Every chunk, in order, at `offset`: one pwritev for up to IOV_MAX chunks, so a body that
/// came from the network in many buffers is written without being copied into one.
fn write_all_at<'a>(file: &File, chunks: impl Iterator<Item = &'a [u8]>, offset: u64) -> io::Result<()> {
    const IOV_MAX: usize = 1024;
    let mut slices: Vec<IoSlice<'_>> = chunks.filter(|c| !c.is_empty()).map(IoSlice::new).collect();
    let mut bufs = &mut slices[..];
    let mut at = offset;
    while !bufs.is_empty() {
        let n = bufs.len().min(IOV_MAX);
        // IoSlice is guaranteed to be ABI-compatible with iovec on Unix.
        let r = unsafe {
            libc::pwritev(file.as_raw_fd(), bufs.as_ptr() as *const libc::iovec, n as libc::c_int, at as libc::off_t)
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        at += r as u64;
        IoSlice::advance_slices(&mut bufs, r as usize);
    }
    Ok(())
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

/// One operation on one file or folder entry: run where `tasks::file_io` says.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tasks::file_io(f).await.map_err(|e| generic(io::Error::other(e)))?
}

/// A walk of a tree, as long as the tree: on the blocking pool.
async fn walking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tasks::on_pool(f).await.map_err(|e| generic(io::Error::other(e)))?
}

fn unsupported(what: &str) -> object_store::Error {
    object_store::Error::NotImplemented { operation: what.to_string(), implementer: "the file store".to_string() }
}

fn to_meta(e: Entry) -> Result<ObjectMeta> {
    Ok(ObjectMeta {
        location: Path::parse(&e.key)?,
        last_modified: e.modified,
        size: e.size,
        e_tag: Some(e.e_tag),
        version: None,
    })
}

#[async_trait]
impl ObjectStore for FileStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        if !opts.attributes.is_empty() {
            return Err(unsupported("put with attributes"));
        }
        let (this, key) = (self.clone_handle()?, location.to_string());
        blocking(move || this.put_blocking(&key, payload, opts.mode)).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        if !opts.attributes.is_empty() {
            return Err(unsupported("multipart put with attributes"));
        }
        Ok(Box::new(self.stage(location.as_ref()).await?))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let (this, key) = (self.clone_handle()?, location.to_string());
        blocking(move || {
            let (file, st) = this.open_file(&key)?;
            let meta = meta_of(&key, &st)?;
            options.check_preconditions(&meta)?;
            let range = match &options.range {
                Some(r) => r
                    .as_range(meta.size)
                    .map_err(|e| generic(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())))?,
                None => 0..meta.size,
            };
            Ok(GetResult {
                payload: GetResultPayload::File(file, PathBuf::from(&key)),
                meta,
                range,
                attributes: Attributes::default(),
                extensions: Default::default(),
            })
        })
        .await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let this = match self.clone_handle() {
            Ok(t) => Arc::new(t),
            Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
        };
        locations
            .then(move |location| {
                let this = this.clone();
                async move {
                    let location = location?;
                    let key = location.to_string();
                    blocking(move || this.delete_blocking(&key)).await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let prefix = prefix.map(|p| p.to_string()).unwrap_or_default();
        let this = self.clone_handle();
        futures::stream::once(async move {
            let this = this?;
            walking(move || this.list_entries(&prefix)).await
        })
        .flat_map(|listed: Result<Vec<Entry>>| match listed {
            Ok(entries) => futures::stream::iter(entries.into_iter().map(to_meta).collect::<Vec<_>>()).boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let prefix = prefix.map(|p| p.to_string()).unwrap_or_default();
        let this = self.clone_handle()?;
        let (objects, _, dirs) = walking(move || this.scan(&prefix, false)).await?;
        Ok(ListResult {
            common_prefixes: dirs.iter().map(Path::parse).collect::<std::result::Result<_, _>>()?,
            objects: objects.into_iter().map(to_meta).collect::<Result<_>>()?,
            extensions: Default::default(),
        })
    }

    async fn copy_opts(&self, _from: &Path, _to: &Path, _options: CopyOptions) -> Result<()> {
        Err(unsupported("copy"))
    }
}

impl FileStore {
    /// Another handle on the same root (a file operation may run on another thread).
    fn clone_handle(&self) -> Result<FileStore> {
        Ok(FileStore { root: self.root.try_clone().map_err(|e| io_error("", e))?, display: self.display.clone() })
    }

    /// A staging file for `key`, written in place (`Upload::writer`) and renamed over `key`
    /// on complete; removed on abort or when dropped unfinished.
    pub async fn stage(&self, key: &str) -> Result<Upload> {
        let (this, key) = (self.clone_handle()?, key.to_string());
        blocking(move || {
            let (dir, name) = this.parent_of(&key, true)?;
            let (file, staging) = FileStore::create_staging(&key, &dir, name)?;
            let name = name.to_string();
            let writer = Writer { file: Arc::new(file), key: key.clone(), one: Default::default() };
            Ok(Upload { key, dir: Arc::new(dir), name, staging, writer: Some(writer), offset: 0 })
        })
        .await
    }
}

/// A multipart write: parts written in place into the locked staging file, renamed on complete.
/// `put_part` appends; `writer` writes at any offset, from any number of tasks at once.
#[derive(Debug)]
pub struct Upload {
    key: String,
    dir: Arc<OwnedFd>,
    name: String,
    staging: String,
    writer: Option<Writer>,
    offset: u64,
}

/// Positional writes (and reads back) into an upload's staging file.
#[derive(Clone, Debug)]
pub struct Writer {
    file: Arc<File>,
    key: String,
    /// One write into the file at a time: buffered writes into one file take its inode lock,
    /// and writers waiting on it spin in the kernel (measured: several times the system CPU
    /// of one writer for the same bytes).
    one: Arc<Mutex<()>>,
}

impl Writer {
    /// `chunks`, in order, from `offset` on (one pwritev per 1024 chunks).
    pub async fn write_at(&self, offset: u64, chunks: Vec<Bytes>) -> Result<()> {
        let this = self.clone();
        blocking(move || {
            let _one = this.one.lock().unwrap_or_else(|e| e.into_inner());
            write_all_at(&this.file, chunks.iter().map(|c| c.as_ref()), offset).map_err(|e| io_error(&this.key, e))
        })
        .await
    }

    /// Up to `len` bytes from `offset` (fewer only at the end of the file).
    pub async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        let this = self.clone();
        blocking(move || {
            let mut buf = vec![0u8; len];
            let mut got = 0;
            while got < len {
                match this.file.read_at(&mut buf[got..], offset + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_error(&this.key, e)),
                }
            }
            buf.truncate(got);
            Ok(Bytes::from(buf))
        })
        .await
    }
}

impl Upload {
    /// Writes at any offset into this upload (None once completed or aborted).
    pub fn writer(&self) -> Option<Writer> {
        self.writer.clone()
    }
}

#[async_trait]
impl MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let offset = self.offset;
        self.offset += data.content_length() as u64;
        let writer = self.writer.clone();
        Box::pin(async move {
            let writer = writer.ok_or_else(|| generic(io::Error::other("upload already finished")))?;
            writer.write_at(offset, data.into_iter().collect()).await
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let writer = self.writer.take().ok_or_else(|| generic(io::Error::other("upload already finished")))?;
        let file = writer.file;
        let (dir, key, staging, name) = (self.dir.clone(), self.key.clone(), self.staging.clone(), self.name.clone());
        blocking(move || {
            let st = fstat(file.as_raw_fd()).map_err(|e| io_error(&key, e))?;
            FileStore::publish(&key, &dir, &staging, &name, &PutMode::Overwrite)?;
            drop(file); // releases the staging lock once the name is in place
            Ok(PutResult { e_tag: Some(etag_of(&st)), version: None, extensions: Default::default() })
        })
        .await
    }

    async fn abort(&mut self) -> Result<()> {
        let file = self.writer.take();
        let (dir, staging) = (self.dir.clone(), self.staging.clone());
        blocking(move || {
            if let Ok(c) = cstr(&staging) {
                unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
            }
            drop(file);
            Ok(())
        })
        .await
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Dropped without complete or abort (the copy was cancelled): leave no staging file.
        if self.writer.take().is_some() {
            if let Ok(c) = cstr(&self.staging) {
                unsafe { libc::unlinkat(self.dir.as_raw_fd(), c.as_ptr(), 0) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{ObjectStoreExt, UpdateVersion};
    use std::os::unix::fs::symlink;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("mbackup-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
    }

    #[test]
    fn links_are_never_followed() {
        let base = tmp("links");
        let (root, outside) = (base.join("root"), base.join("outside"));
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        std::fs::write(root.join("a/ok"), b"ok").unwrap();
        symlink(&outside, root.join("a/dirlink")).unwrap();
        symlink(outside.join("secret"), root.join("a/filelink")).unwrap();
        let store = FileStore::open(root.to_str().unwrap()).unwrap();
        rt().block_on(async {
            let keys: Vec<String> = store.list_entries("").unwrap().into_iter().map(|e| e.key).collect();
            assert_eq!(keys, vec!["a/ok"]);
            assert_eq!(store.list_entries("").unwrap().len(), 1, "a second listing sees the same");
            let skipped = take_skipped();
            assert!(skipped.iter().any(|(_, k)| k == "a/dirlink") && skipped.iter().any(|(_, k)| k == "a/filelink"));
            for key in ["a/dirlink/secret", "a/filelink"] {
                let p = Path::parse(key).unwrap();
                let err = store.get(&p).await.unwrap_err().to_string();
                assert!(err.contains("symbolic link"), "{err}");
                assert!(store.put(&p, PutPayload::from_static(b"x")).await.is_err());
                assert!(store.delete(&p).await.is_err());
            }
            assert!(store.put(&Path::parse("a/dirlink/new").unwrap(), PutPayload::from_static(b"x")).await.is_err());
        });
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"s");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn an_object_and_objects_under_its_name_clash_in_writes_only() {
        let root = tmp("clash");
        let store = FileStore::open(root.to_str().unwrap()).unwrap();
        rt().block_on(async {
            let store = &store;
            let put = |key: &str| {
                let p = Path::parse(key).unwrap();
                async move { store.put(&p, PutPayload::from_static(b"x")).await }
            };
            put("a").await.unwrap();
            put("c/d").await.unwrap();
            for (key, file) in [("a/b", "a"), ("a/b/c", "a"), ("c", "c")] {
                let err = crate::errors::Error::from(put(key).await.unwrap_err());
                assert_eq!(err.code, crate::errors::Code::KeyClash, "{}", err.message);
                assert!(
                    err.message.contains(&format!("an object {file} and objects under {file}/")),
                    "{}",
                    err.message
                );
            }
            // Under an object nothing can be: not found, as on S3, and deleted already.
            let under = Path::parse("a/b").unwrap();
            assert!(matches!(store.head(&under).await, Err(object_store::Error::NotFound { .. })));
            store.delete(&under).await.unwrap_or_else(|e| assert!(matches!(e, object_store::Error::NotFound { .. })));
            assert!(store.list_entries("a").unwrap().is_empty());
        });
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn conditional_update_is_a_compare_and_swap() {
        let root = tmp("cas");
        let store = Arc::new(FileStore::open(root.to_str().unwrap()).unwrap());
        for p in [Path::parse("d/lock").unwrap(), Path::parse("lock").unwrap()] {
            rt().block_on(async {
                let first = store.put(&p, PutPayload::from_static(b"v1")).await.unwrap();
                let update = |etag: Option<String>| PutOptions {
                    mode: PutMode::Update(UpdateVersion { e_tag: etag, version: None }),
                    ..Default::default()
                };
                // Many writers holding the same version race: exactly one wins.
                let mut tasks = vec![];
                for i in 0..16 {
                    let (store, p, opts) = (store.clone(), p.clone(), update(first.e_tag.clone()));
                    tasks.push(tokio::spawn(async move {
                        store.put_opts(&p, PutPayload::from(format!("w{i}").into_bytes()), opts).await
                    }));
                }
                let mut won = 0;
                for t in tasks {
                    match t.await.unwrap() {
                        Ok(_) => won += 1,
                        Err(object_store::Error::Precondition { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                assert_eq!(won, 1);
                let meta = store.head(&p).await.unwrap();
                assert!(store.put_opts(&p, PutPayload::from_static(b"v3"), update(meta.e_tag.clone())).await.is_ok());
                assert!(matches!(
                    store
                        .put_opts(
                            &Path::parse("d/none").unwrap(),
                            PutPayload::from_static(b"x"),
                            update(Some("x".into()))
                        )
                        .await,
                    Err(object_store::Error::Precondition { .. })
                ));
            });
        }
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn ranges_written_out_of_order_from_many_tasks_land_in_place() {
        let root = tmp("writer");
        let store = FileStore::open(root.to_str().unwrap()).unwrap();
        let data: Vec<u8> = (0..3_000_017u32).map(|i| (i * 31 % 251) as u8).collect();
        rt().block_on(async {
            let mut upload = store.stage("d/big").await.unwrap();
            let writer = upload.writer().unwrap();
            // Ranges of odd lengths, each in chunks of odd lengths, all written at once.
            let bounds: Vec<usize> = vec![0, 700_001, 1_400_003, 2_999_999, data.len()];
            let tasks: Vec<_> = bounds
                .windows(2)
                .rev()
                .map(|w| {
                    let (writer, part) = (writer.clone(), data[w[0]..w[1]].to_vec());
                    let start = w[0] as u64;
                    tokio::spawn(async move {
                        let chunks: Vec<Bytes> = part.chunks(65_537).map(Bytes::copy_from_slice).collect();
                        writer.write_at(start, chunks).await
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            assert_eq!(writer.read_at(2_999_990, 100).await.unwrap(), data[2_999_990..]);
            assert!(std::fs::read(root.join("d/big")).is_err(), "nothing at the name before complete");
            upload.complete().await.unwrap();
        });
        assert_eq!(std::fs::read(root.join("d/big")).unwrap(), data);
        assert_eq!(std::fs::read_dir(root.join("d")).unwrap().count(), 1, "no staging file left");
        // Aborted (or dropped) part-way: nothing at the name, no staging file.
        rt().block_on(async {
            let mut upload = store.stage("d/other").await.unwrap();
            upload.writer().unwrap().write_at(4, vec![Bytes::from_static(b"xyz")]).await.unwrap();
            upload.abort().await.unwrap();
            let dropped = store.stage("d/third").await.unwrap();
            dropped.writer().unwrap().write_at(0, vec![Bytes::from_static(b"xyz")]).await.unwrap();
        });
        let names: Vec<_> = std::fs::read_dir(root.join("d")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec!["big"]);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn staging_files_in_use_are_not_leftovers() {
        let root = tmp("leftovers");
        std::fs::create_dir_all(root.join("x")).unwrap();
        std::fs::write(root.join("x/big#1"), b"dead").unwrap(); // left by a killed writer
        let store = FileStore::open(root.to_str().unwrap()).unwrap();
        rt().block_on(async {
            let mut live = store.put_multipart(&Path::parse("x/other").unwrap()).await.unwrap();
            let found: Vec<(String, String)> =
                store.leftovers("").unwrap().into_iter().map(|l| (l.key, l.staging)).collect();
            assert_eq!(found, vec![("x/big".to_string(), "x/big#1".to_string())]);
            assert!(!store.remove_leftover("x/other#1").unwrap()); // in use
            assert!(store.remove_leftover("x/big#1").unwrap());
            live.put_part(PutPayload::from_static(b"abc")).await.unwrap();
            live.complete().await.unwrap();
        });
        assert_eq!(std::fs::read(root.join("x/other")).unwrap(), b"abc");
        assert_eq!(std::fs::read_dir(root.join("x")).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(root);
    }
}
