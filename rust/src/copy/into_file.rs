//! Large objects into a folder: ranged GETs in parallel, each written at its own offset of the
//! staging file as its chunks arrive. Nothing waits for a whole part, so memory is the writes
//! in flight (WRITE_SIZE per range), whatever the range's length, and ranges can be long: few
//! GETs per object. Bytes reach the file a write after they came off the socket; held as whole
//! 8 MiB parts until their turn, they had left the CPU's caches, and the kernel's copy into the
//! page cache was 40% of the CPU samples of a download against 17% now (benches/README.md, #14).

use futures::stream::{self, StreamExt};

use super::{long_range, part_size_for, ranges, Counter, Engine, Job, Writes, WRITE_SIZE};
use crate::backend::fs::Writer;
use crate::checksum::{Hasher, PartCrcs, Sums, Want};
use crate::errors::Result;
use crate::version::{changed, Pin};

impl Engine {
    /// Ranges of the pinned version written into `writer`'s file; the sums of the whole object.
    pub(super) async fn stream_ranges(
        &self,
        job: &Job,
        pin: &Pin,
        size: u64,
        want: Want,
        writer: &Writer,
        counter: &Counter<'_>,
    ) -> Result<Sums> {
        // A local file is read a range at a time in one buffer: its ranges stay part-sized.
        let from_file = job.src.kind() == "file";
        let range_size = match from_file {
            true => part_size_for(size, self.opts.part_size),
            false => long_range(size, self.opts.part_size, self.opts.part_parallel),
        };
        let crcs = Want { md5: false, ..want };
        let mut parts = stream::iter(ranges(size, range_size).into_iter().enumerate())
            .map(|(i, range)| async move {
                let len = range.end - range.start;
                let _memory = self.reserve(if from_file { len } else { WRITE_SIZE.min(len) }).await?;
                self.limits.request().await;
                let read = self.write_range(job, pin, size, range, crcs, writer, counter);
                Ok::<_, crate::errors::Error>((i, len, self.cancellable(read).await?))
            })
            .buffer_unordered(self.opts.part_parallel.max(1));
        let mut done = Vec::new();
        while let Some(part) = self.cancellable(async { Ok(parts.next().await) }).await? {
            done.push(part?);
        }
        done.sort_unstable_by_key(|(i, _, _)| *i);
        let mut hasher = Hasher::new(want);
        for (_, len, part) in done {
            hasher.append_crcs(part, len);
        }
        if want.md5 {
            // MD5 takes the bytes in order, which the ranges did not arrive in: read them back.
            let mut at = 0;
            while at < size {
                let n = WRITE_SIZE.min(size - at);
                let data = self.cancellable(async { Ok(writer.read_at(at, n as usize).await?) }).await?;
                if data.len() as u64 != n {
                    return Err(changed(&job.dst_key, "the file being written was cut short"));
                }
                hasher.update_md5(&data);
                at += n;
            }
        }
        Ok(hasher.finish())
    }

    /// One range, WRITE_SIZE bytes per write at its place in the file; the range's CRCs.
    #[allow(clippy::too_many_arguments)]
    async fn write_range(
        &self,
        job: &Job,
        pin: &Pin,
        size: u64,
        range: std::ops::Range<u64>,
        want: Want,
        writer: &Writer,
        counter: &Counter<'_>,
    ) -> Result<[Option<u64>; 2]> {
        let src_key = job.src_key.as_str();
        let opened = self.open_source(job, pin, size, Some(range.clone())).await?;
        let len = range.end - range.start;
        let mut crcs = PartCrcs::new(&want);
        let (mut writes, mut read, mut at) = (Writes::default(), 0u64, range.start);
        let mut body = opened.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            read += chunk.len() as u64;
            if read > len {
                return Err(changed(src_key, &format!("a range of {len} bytes came back longer")));
            }
            self.limits.bytes(chunk.len() as u64).await;
            counter.add(chunk.len() as u64);
            crcs.update(&chunk);
            for full in writes.push(chunk) {
                writer.write_at(at, full).await?;
                at += WRITE_SIZE;
            }
        }
        if let Some(rest) = writes.rest() {
            writer.write_at(at, rest).await?;
        }
        if read != len {
            return Err(changed(src_key, &format!("a range of {len} bytes came back with {read}")));
        }
        Ok(crcs.finish())
    }
}
