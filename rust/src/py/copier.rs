//! `Copier`: runs copy jobs and checksum reads for Python, with the GIL released.

use std::collections::HashMap;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use tokio_util::sync::CancellationToken;

use super::runtime;
use super::store::{backend_of, parse_algo};
use crate::backend::{self, Backend};
use crate::checksum;
use crate::copy::{Engine, Job, Options};
use crate::limits;
use crate::progress::Progress;
use crate::tasks::in_tasks;

/// What `Copier.checksums` gives Python for each object: (checksum hex, size, error message).
type Checksummed = (Option<String>, Option<u64>, Option<String>);

/// Runs copy jobs. Create one per copy; read `progress()` and call `cancel()` from any
/// thread while `run()` works.
#[pyclass(frozen, module = "milvus_backup._engine")]
pub struct Copier {
    options: Options,
    max_bandwidth: u64,
    max_requests_per_sec: f64,
    progress: Arc<Progress>,
    cancel: CancellationToken,
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The allowed range of every numeric `Copier` parameter: (name, default, min, max).
/// Sizes are bytes; S3 takes parts of 5 MiB to 5 GiB and single PUTs and CopyObjects of
/// up to 5 GiB, so larger values could only fail later, object by object. The defaults are
/// those of mbackup's settings table (python/milvus_backup/config/params.py), which the
/// Go tool's defaults decide (128 copies in flight, server-side multipart above 500 MiB);
/// a test holds the two to each other through `Copier.defaults()`.
const INT_PARAMS: [(&str, u64, u64, u64); 10] = [
    ("parallel", 128, 1, 4096),
    ("part_parallel", 4, 1, 256),
    ("max_attempts", 5, 1, 100),
    ("part_size", 8 * MIB, 5 * MIB, 5 * GIB),
    ("copy_part_size", 64 * MIB, 5 * MIB, 5 * GIB),
    ("multipart_threshold", 16 * MIB, 0, 5 * GIB),
    ("multipart_copy_threshold", 500 * MIB, 0, 5 * GIB),
    ("memory_budget", 128 * MIB, MIB, 1 << 40),
    // Bytes per second; 0 is no cap.
    ("max_bandwidth", 0, 0, 1 << 50),
    // Not a Copier argument: the range `max_requests_per_sec` is checked against, x1000.
    ("max_requests_per_sec_milli", 0, 10, 1_000_000_000),
];

fn int_range(name: &str) -> (u64, u64, u64) {
    let (_, default, min, max) = INT_PARAMS.iter().find(|p| p.0 == name).expect("a parameter in INT_PARAMS");
    (*default, *min, *max)
}

/// Show a byte count the way a person reads it, when it is a whole number of KiB, MiB...
fn human(name: &str, n: u64) -> String {
    let sized =
        name.ends_with("size") || name.ends_with("threshold") || name == "memory_budget" || name == "max_bandwidth";
    let unit = [(1u64 << 50, "PiB"), (1 << 40, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")]
        .into_iter()
        .find(|(u, _)| n >= *u && n.is_multiple_of(*u));
    match unit {
        Some((u, label)) if sized => format!("{n} ({} {label})", n / u),
        _ => n.to_string(),
    }
}

/// An integer argument within its range, or a ValueError naming it and the range (Python
/// ints of any size, negative ones and non-integers included: never an overflow or panic).
fn int_param(name: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
    let (default, min, max) = int_range(name);
    let Some(value) = value.filter(|v| !v.is_none()) else { return Ok(default) };
    let n = if value.is_instance_of::<pyo3::types::PyBool>() { None } else { value.extract::<i128>().ok() };
    match n {
        Some(n) if n >= min as i128 && n <= max as i128 => Ok(n as u64),
        _ => Err(PyValueError::new_err(format!(
            "{name} must be an integer from {} to {}, not {}",
            human(name, min),
            human(name, max),
            value.repr().map(|r| r.to_string()).unwrap_or_else(|_| "that".into())
        ))),
    }
}

/// Requests per second: 0 for no cap, else a finite rate in range (a vanishing rate would
/// make a wait longer than any clock can hold).
fn rate_param(value: Option<&Bound<'_, PyAny>>) -> PyResult<f64> {
    let (default, min, max) = int_range("max_requests_per_sec_milli");
    let (min, max) = (min as f64 / 1000.0, max as f64 / 1000.0);
    let Some(value) = value.filter(|v| !v.is_none()) else { return Ok(default as f64 / 1000.0) };
    match value.extract::<f64>() {
        Ok(r) if r == 0.0 || (min..=max).contains(&r) => Ok(r),
        _ => Err(PyValueError::new_err(format!(
            "max_requests_per_sec must be 0 (no cap) or from {min} to {max}, not {}",
            value.repr().map(|r| r.to_string()).unwrap_or_else(|_| "that".into())
        ))),
    }
}

#[pymethods]
impl Copier {
    /// Every numeric argument is checked against its range (see INT_PARAMS); a value out of
    /// range is a ValueError naming the argument and the range.
    #[new]
    #[pyo3(signature = (
        *, parallel=None, checksum="crc32c", verify=false,
        multipart_threshold=None, part_size=None,
        multipart_copy_threshold=None, copy_part_size=None,
        part_parallel=None, memory_budget=None, max_bandwidth=None, max_requests_per_sec=None,
        max_attempts=None,
    ))]
    // Python's keyword arguments, one per setting: PyO3 takes them as parameters.
    #[allow(clippy::too_many_arguments)]
    fn new(
        parallel: Option<Bound<'_, PyAny>>,
        checksum: &str,
        verify: bool,
        multipart_threshold: Option<Bound<'_, PyAny>>,
        part_size: Option<Bound<'_, PyAny>>,
        multipart_copy_threshold: Option<Bound<'_, PyAny>>,
        copy_part_size: Option<Bound<'_, PyAny>>,
        part_parallel: Option<Bound<'_, PyAny>>,
        memory_budget: Option<Bound<'_, PyAny>>,
        max_bandwidth: Option<Bound<'_, PyAny>>,
        max_requests_per_sec: Option<Bound<'_, PyAny>>,
        max_attempts: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let checksum = match checksum::Algo::parse(checksum) {
            Some(a) => a,
            None => {
                return Err(PyValueError::new_err(format!(
                    "unknown checksum {checksum:?}: use crc32c, crc64nvme or none"
                )))
            }
        };
        let options = Options {
            parallel: int_param("parallel", parallel.as_ref())? as usize,
            checksum,
            verify,
            multipart_threshold: int_param("multipart_threshold", multipart_threshold.as_ref())?,
            part_size: int_param("part_size", part_size.as_ref())?,
            multipart_copy_threshold: int_param("multipart_copy_threshold", multipart_copy_threshold.as_ref())?,
            copy_part_size: int_param("copy_part_size", copy_part_size.as_ref())?,
            part_parallel: int_param("part_parallel", part_parallel.as_ref())? as usize,
            memory_budget: int_param("memory_budget", memory_budget.as_ref())?,
            max_attempts: int_param("max_attempts", max_attempts.as_ref())? as u32,
        };
        Ok(Copier {
            options,
            max_bandwidth: int_param("max_bandwidth", max_bandwidth.as_ref())?,
            max_requests_per_sec: rate_param(max_requests_per_sec.as_ref())?,
            progress: Default::default(),
            cancel: CancellationToken::new(),
        })
    }

    /// What each numeric argument left out (or None) becomes: `{name: default}`.
    #[staticmethod]
    fn defaults(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
        let d = PyDict::new(py);
        for (name, default, _, _) in INT_PARAMS {
            match name.strip_suffix("_milli") {
                Some(rate) => d.set_item(rate, default as f64 / 1000.0)?,
                None => d.set_item(name, default)?,
            }
        }
        Ok(d)
    }

    /// Counters so far: objects and bytes total/done, skipped, failures, retries, in flight.
    fn progress(&self) -> HashMap<&'static str, u64> {
        self.progress.snapshot().into_iter().collect()
    }

    /// Stop starting jobs, abort multipart uploads in flight; `run()` returns soon after.
    fn cancel(&self) {
        self.cancel.cancel();
    }

    #[getter]
    fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Count objects the caller decided not to copy, so progress totals stay whole.
    fn note_skipped(&self, objects: u64, bytes: u64) {
        Progress::add(&self.progress.objects_skipped, objects);
        Progress::add(&self.progress.objects_total, objects);
        Progress::add(&self.progress.bytes_total, bytes);
        Progress::add(&self.progress.bytes_done, bytes);
    }

    /// Read objects and checksum them, `parallel` at a time, within the byte and request
    /// caps: `items` are `(store, key)`; returns `(checksum_hex, size, error)` for each.
    #[pyo3(signature = (items, algo="crc32c"))]
    fn checksums<'py>(
        &self,
        py: Python<'py>,
        items: Vec<(Bound<'py, PyAny>, String)>,
        algo: &str,
    ) -> PyResult<Vec<Checksummed>> {
        let algo = parse_algo(algo)?;
        let mut reads = Vec::with_capacity(items.len());
        for (store, key) in items {
            reads.push((backend_of(&store)?, key));
        }
        let parallel = self.options.parallel;
        let limits = Arc::new(limits::Limits::new(self.max_bandwidth, self.max_requests_per_sec));
        let cancel = self.cancel.clone();
        // Each read a task of its own, as a copy's jobs are (tasks::in_tasks).
        let results = py.detach(|| {
            runtime().block_on(in_tasks(reads, parallel, |(backend, key)| {
                let (limits, cancel) = (limits.clone(), cancel.clone());
                async move {
                    let read = async {
                        limits.request().await;
                        backend::read_checksum(&backend, &key, algo, Some(&limits)).await
                    };
                    // Reads in flight stop too: a capped read of a large object would
                    // otherwise hold Ctrl-C for as long as it takes.
                    tokio::select! {
                        r = read => match r {
                            Ok((sum, size)) => (Some(algo.hex(sum)), Some(size), None),
                            Err(e) => (None, None, Some(e.message)),
                        },
                        _ = cancel.cancelled() => (None, None, Some("cancelled".to_string())),
                    }
                }
            }))
        });
        Ok(results)
    }

    /// Copy `jobs`, each `(src_store, src_key, dst_store, dst_key, size_or_None)` or the same
    /// with the source's listed ETag last: the version to copy (the copy fails over to the
    /// current version, whole, if it changes). Returns one dict per job, in order; a job
    /// whose source changed on every attempt fails with `error_code` "changed". Blocks
    /// until done; the GIL is released.
    fn run<'py>(&self, py: Python<'py>, jobs: Vec<Bound<'py, PyTuple>>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let mut cache: HashMap<usize, Arc<Backend>> = HashMap::new();
        let mut backend = |obj: Bound<'py, PyAny>| -> PyResult<Arc<Backend>> {
            let id = obj.as_ptr() as usize;
            if let Some(b) = cache.get(&id) {
                return Ok(b.clone());
            }
            let b = backend_of(&obj)?;
            cache.insert(id, b.clone());
            Ok(b)
        };
        let mut plan = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let (src, src_key, dst, dst_key, size, etag): (
                Bound<PyAny>,
                String,
                Bound<PyAny>,
                String,
                Option<u64>,
                Option<String>,
            ) = match job.len() {
                6 => job.extract()?,
                _ => {
                    let (src, src_key, dst, dst_key, size) = job.extract()?;
                    (src, src_key, dst, dst_key, size, None)
                }
            };
            plan.push(Job { src: backend(src)?, src_key, dst: backend(dst)?, dst_key, size, etag });
        }
        let engine = Engine::new(
            self.options.clone(),
            limits::Limits::new(self.max_bandwidth, self.max_requests_per_sec),
            self.progress.clone(),
            self.cancel.clone(),
        );
        let results = py.detach(|| runtime().block_on(Arc::new(engine).run(plan)));
        // One dict per object, kept by the caller until the copy ends: the keys and the few
        // names among the values are interned, not new strings per object.
        let mut out = Vec::with_capacity(results.len());
        for (job, r) in jobs.iter().zip(results) {
            let d = PyDict::new(py);
            d.set_item(intern!(py, "src_key"), job.get_item(1)?)?;
            d.set_item(intern!(py, "dst_key"), job.get_item(3)?)?;
            d.set_item(intern!(py, "size"), r.size)?;
            d.set_item(intern!(py, "strategy"), r.strategy.map(|s| PyString::intern(py, s.name())))?;
            d.set_item(intern!(py, "attempts"), r.attempts)?;
            match r.outcome {
                Ok(o) => {
                    d.set_item(intern!(py, "bytes"), o.bytes)?;
                    d.set_item(intern!(py, "checksum"), o.checksum.map(|(a, v)| a.hex(v)))?;
                    d.set_item(intern!(py, "checksum_algo"), o.checksum.map(|(a, _)| PyString::intern(py, a.name())))?;
                    d.set_item(intern!(py, "etag"), o.etag)?;
                    d.set_item(intern!(py, "verified"), o.verified)?;
                    d.set_item(intern!(py, "error"), py.None())?;
                    d.set_item(intern!(py, "error_code"), py.None())?;
                }
                Err(e) => {
                    d.set_item(intern!(py, "bytes"), 0)?;
                    d.set_item(intern!(py, "checksum"), py.None())?;
                    d.set_item(intern!(py, "checksum_algo"), py.None())?;
                    d.set_item(intern!(py, "etag"), py.None())?;
                    d.set_item(intern!(py, "verified"), false)?;
                    d.set_item(intern!(py, "error"), e.message)?;
                    d.set_item(intern!(py, "error_code"), PyString::intern(py, e.code.name()))?;
                }
            }
            out.push(d);
        }
        Ok(out)
    }
}
