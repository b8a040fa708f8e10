//! mbackup's engine: parallel object copies and checksums, run on a tokio runtime with the
//! GIL released. Python plans what to copy; this crate moves the bytes.
//!
//! `py/` is the Python module; `backend/` the stores (S3, files, object_store's natives,
//! Python objects); `copy.rs` the copy strategies over any two backends.

mod backend;
mod checksum;
mod copy;
mod errors;
mod events;
mod limits;
mod progress;
mod py;
mod retry;
mod tasks;
mod version;
