//! The Python module `milvus_backup._engine`: the PyO3 classes and functions, and the one
//! tokio runtime they block on with the GIL released. Nothing outside `py/` knows Python
//! (except the Python-store backend, which must call it).

mod copier;
mod errors;
mod store;

use std::sync::OnceLock;

use pyo3::prelude::*;

use crate::backend::fs;
use crate::checksum;
use crate::events;
pub use errors::to_py_err;
use store::parse_algo;

/// One runtime for the process: stores keep connection pools tied to it.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            // Tree walks, long sums and, after a slow one, all file I/O run on the blocking
            // pool (tasks::file_io); tokio allows 512 threads there, and
            // each thread can take its own malloc arena. A few threads keep a disk busy.
            .max_blocking_threads(16)
            .thread_name("mbackup-engine")
            .build()
            .expect("cannot start the tokio runtime")
    })
}

/// Checksum of `data` with `algo` ("crc32c" or "crc64nvme"), as an integer.
#[pyfunction]
#[pyo3(name = "checksum")]
fn py_checksum(py: Python<'_>, algo: &str, data: &[u8]) -> PyResult<u64> {
    let algo = parse_algo(algo)?;
    // Large buffers are checksummed without holding the GIL.
    Ok(if data.len() > 1 << 20 { py.detach(|| checksum::checksum(algo, data)) } else { checksum::checksum(algo, data) })
}

/// Every (store root, key) that folder listings skipped since the last call: symbolic links,
/// special files and names that are not UTF-8, which mbackup never reads, writes or deletes.
#[pyfunction]
fn take_skipped_links() -> Vec<(String, String)> {
    fs::take_skipped()
}

/// The engine's events since the last call (its retries, and object_store's): (unix time,
/// level, message), oldest first. Python's log forwards them (logs.py).
#[pyfunction]
fn take_events() -> Vec<events::Entry> {
    events::take()
}

/// Object buffers are large and short-lived. glibc raises its mmap threshold after freeing
/// large blocks, and from then on serves them from heap arenas it rarely returns to the OS,
/// so RSS grows far past the bytes in use. A fixed threshold keeps every buffer of 1 MiB
/// or more in its own mapping, unmapped when freed. Smaller ones (a file's 256 KiB chunks)
/// come from arenas, one per thread that allocates up to 8 per core, each keeping its own
/// peak: two arenas hold 4-6 MiB less over a 1 GiB local->S3 copy (56 MiB against 60-65,
/// peak RSS of `mbackup copy` of 4 x 256 MiB files, 3 runs each) at the same CPU.
fn tame_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    tame_allocator();
    events::install();
    // The package's version, read here rather than through importlib.metadata, which took
    // 0.035 CPU s of `mbackup --version` (0.193 -> 0.158, issue #14). Cargo.toml holds it;
    // maturin gives the same to the package metadata.
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<store::Store>()?;
    m.add_class::<copier::Copier>()?;
    m.add_function(wrap_pyfunction!(py_checksum, m)?)?;
    m.add_function(wrap_pyfunction!(take_skipped_links, m)?)?;
    m.add_function(wrap_pyfunction!(take_events, m)?)?;
    errors::register(m)?;
    Ok(())
}
