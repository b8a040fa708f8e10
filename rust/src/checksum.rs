//! Whole-object checksums computed while bytes stream through the engine.
//!
//! Parts of one object may be copied concurrently: each part gets its own CRC and the
//! parts are folded together in order with `checksum_combine`, so a multipart copy
//! still yields the checksum of the whole object.
//!
//! A copy may check the bytes against what the source offers (a CRC header, or the MD5 an
//! S3 ETag of a single-part object is): `Hasher` computes several sums in the one pass that
//! touches the bytes, and MD5 only when asked, since it costs ~30x a CRC.

use crc_fast::{checksum_combine, CrcAlgorithm, Digest};
use md5::{Digest as _, Md5};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    Crc32c,
    Crc64Nvme,
    /// CRC-32 (IEEE), which S3 can hold for an object; never chosen for manifests.
    Crc32,
}

impl Algo {
    pub fn parse(name: &str) -> Option<Option<Algo>> {
        match name.to_ascii_lowercase().as_str() {
            "crc32c" => Some(Some(Algo::Crc32c)),
            "crc64nvme" => Some(Some(Algo::Crc64Nvme)),
            "none" | "" => Some(None),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algo::Crc32c => "crc32c",
            Algo::Crc64Nvme => "crc64nvme",
            Algo::Crc32 => "crc32",
        }
    }

    fn crc(self) -> CrcAlgorithm {
        match self {
            Algo::Crc32c => CrcAlgorithm::Crc32Iscsi,
            Algo::Crc64Nvme => CrcAlgorithm::Crc64Nvme,
            Algo::Crc32 => CrcAlgorithm::Crc32IsoHdlc,
        }
    }

    /// Render a value the way manifests store it: fixed-width lowercase hex.
    pub fn hex(self, value: u64) -> String {
        match self {
            Algo::Crc32c | Algo::Crc32 => format!("{value:08x}"),
            Algo::Crc64Nvme => format!("{value:016x}"),
        }
    }
}

/// A running checksum over bytes fed in order.
pub struct Running {
    digest: Digest,
}

impl Running {
    pub fn new(algo: Algo) -> Self {
        Running { digest: Digest::new(algo.crc()) }
    }
    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data)
    }
    pub fn finish(&self) -> u64 {
        self.digest.finalize()
    }
}

pub fn checksum(algo: Algo, data: &[u8]) -> u64 {
    crc_fast::checksum(algo.crc(), data)
}

/// Checksum of `a ++ b` from the checksums of `a` and `b` and the length of `b`.
pub fn combine(algo: Algo, a: u64, b: u64, b_len: u64) -> u64 {
    checksum_combine(algo.crc(), a, b, b_len)
}

/// A sum the source states for an object's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sum {
    Crc(Algo, u64),
    Md5([u8; 16]),
}

impl Sum {
    pub fn describe(&self) -> String {
        match self {
            Sum::Crc(a, v) => format!("{} {}", a.name(), a.hex(*v)),
            Sum::Md5(d) => format!("md5 {}", d.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        }
    }
}

/// Which sums to compute over one stream of bytes: up to two CRCs and, when nothing
/// cheaper can be compared, MD5.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Want {
    pub crcs: [Option<Algo>; 2],
    pub md5: bool,
}

impl Want {
    /// The caller's own CRC (for the manifest) plus whatever `offered` needs.
    pub fn for_copy(own: Option<Algo>, offered: Option<Sum>) -> Want {
        let mut want = Want { crcs: [own, None], md5: false };
        match offered {
            Some(Sum::Crc(a, _)) if own != Some(a) => want.crcs[1] = Some(a),
            Some(Sum::Md5(_)) => want.md5 = true,
            _ => {}
        }
        want
    }

    fn algos(&self) -> impl Iterator<Item = Algo> + '_ {
        self.crcs.iter().flatten().copied()
    }
}

/// CRCs of one part, computed where the part is read (parts of an object in parallel).
/// The CRCs of one part, given as the chunks it arrived in (never gathered into one buffer).
pub fn part_crcs<T: AsRef<[u8]>>(want: &Want, chunks: &[T]) -> [Option<u64>; 2] {
    let mut part = PartCrcs::new(want);
    for chunk in chunks {
        part.update(chunk.as_ref());
    }
    part.finish()
}

/// The CRCs `want` names over one part, fed chunk by chunk as the part arrives.
pub struct PartCrcs([Option<Running>; 2]);

impl PartCrcs {
    pub fn new(want: &Want) -> Self {
        PartCrcs(want.crcs.map(|a| a.map(Running::new)))
    }
    pub fn update(&mut self, data: &[u8]) {
        for running in self.0.iter_mut().flatten() {
            running.update(data);
        }
    }
    pub fn finish(&self) -> [Option<u64>; 2] {
        [0, 1].map(|i| self.0[i].as_ref().map(Running::finish))
    }
}

/// Sums over bytes fed in order: chunks through `update`, or parts whose CRCs were computed
/// elsewhere through `append_part` (MD5 still needs the bytes, in order). Chunks go into running
/// digests: combining a CRC per chunk cost more than the CRC itself for network-sized chunks.
pub struct Hasher {
    want: Want,
    crcs: [Option<u64>; 2],
    /// Whether `crcs` hold parts yet: until then a running digest is the whole sum.
    parts: bool,
    running: [Option<Digest>; 2],
    md5: Option<Md5>,
}

impl Hasher {
    pub fn new(want: Want) -> Self {
        let empty = want.crcs.map(|a| a.map(|a| checksum(a, b"")));
        Hasher {
            want,
            crcs: empty,
            parts: false,
            running: want.crcs.map(|a| a.map(|a| Digest::new(a.crc()))),
            md5: want.md5.then(Md5::new),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        for digest in self.running.iter_mut().flatten() {
            digest.update(data);
        }
        if let Some(m) = &mut self.md5 {
            m.update(data);
        }
    }

    pub fn append_part<T: AsRef<[u8]>>(&mut self, part: [Option<u64>; 2], chunks: &[T]) {
        let len: u64 = chunks.iter().map(|c| c.as_ref().len() as u64).sum();
        self.append_crcs(part, len);
        for chunk in chunks {
            self.update_md5(chunk.as_ref());
        }
    }

    /// The next `len` bytes, known by their CRCs only: MD5, if wanted, is fed the same bytes
    /// separately (`update_md5`), in order.
    pub fn append_crcs(&mut self, part: [Option<u64>; 2], len: u64) {
        self.fold_running();
        self.parts = true;
        for ((crc, want), p) in self.crcs.iter_mut().zip(self.want.crcs).zip(part) {
            if let (Some(a), Some(acc), Some(p)) = (want, *crc, p) {
                *crc = Some(combine(a, acc, p, len));
            }
        }
    }

    pub fn update_md5(&mut self, data: &[u8]) {
        if let Some(m) = &mut self.md5 {
            m.update(data);
        }
    }

    /// Bytes fed through `update` since the last part, folded into the sums of the parts.
    fn fold_running(&mut self) {
        for ((crc, want), digest) in self.crcs.iter_mut().zip(self.want.crcs).zip(self.running.iter_mut()) {
            if let (Some(a), Some(acc), Some(d)) = (want, *crc, digest.as_mut()) {
                if !self.parts {
                    *crc = Some(d.finalize()); // no combine (a cost per call) for a plain stream
                } else if d.get_amount() > 0 {
                    *crc = Some(combine(a, acc, d.finalize(), d.get_amount()));
                }
                d.reset();
            }
        }
    }

    pub fn finish(mut self) -> Sums {
        self.fold_running();
        let mut sums = Sums::default();
        for (a, v) in self.want.algos().zip(self.crcs.into_iter().flatten()) {
            sums.crcs.push((a, v));
        }
        sums.md5 = self.md5.map(|m| m.finalize().into());
        sums
    }
}

/// What a copy computed over the bytes it moved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sums {
    crcs: Vec<(Algo, u64)>,
    md5: Option<[u8; 16]>,
}

impl Sums {
    pub fn crc(&self, algo: Algo) -> Option<u64> {
        self.crcs.iter().find(|(a, _)| *a == algo).map(|(_, v)| *v)
    }

    /// The same kind of sum as `other`, if it was computed.
    pub fn like(&self, other: &Sum) -> Option<Sum> {
        match other {
            Sum::Crc(a, _) => self.crc(*a).map(|v| Sum::Crc(*a, v)),
            Sum::Md5(_) => self.md5.map(Sum::Md5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // Standard check values for the ASCII string "123456789".
        assert_eq!(checksum(Algo::Crc32c, b"123456789"), 0xe306_9283);
        assert_eq!(checksum(Algo::Crc64Nvme, b"123456789"), 0xae8b_1486_0a79_9888);
    }

    #[test]
    fn combining_parts_equals_whole() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for algo in [Algo::Crc32c, Algo::Crc64Nvme] {
            let whole = checksum(algo, &data);
            let mut acc = checksum(algo, &data[..0]);
            let mut offset = 0;
            for len in [1usize, 7, 4096, 30_000, 65_896] {
                let part = &data[offset..offset + len];
                acc = combine(algo, acc, checksum(algo, part), len as u64);
                offset += len;
            }
            assert_eq!(offset, data.len());
            assert_eq!(acc, whole, "{algo:?}");
        }
    }

    #[test]
    fn hasher_by_chunks_or_by_parts_equals_one_shot() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let offered = Sum::Md5(Md5::digest(&data).into());
        let want = Want::for_copy(Some(Algo::Crc32c), Some(offered));
        let mut by_chunks = Hasher::new(want);
        let mut by_parts = Hasher::new(want);
        for chunk in data.chunks(7_001) {
            by_chunks.update(chunk);
            by_parts.append_part(part_crcs(&want, &[chunk]), &[chunk]);
        }
        // Chunks and parts mixed in one stream (a part after chunks, chunks after a part).
        let mut mixed = Hasher::new(want);
        for (i, chunk) in data.chunks(7_001).enumerate() {
            match i % 3 {
                0 => mixed.append_part(part_crcs(&want, &[chunk]), &[chunk]),
                _ => mixed.update(chunk),
            }
        }
        let (a, b) = (by_chunks.finish(), by_parts.finish());
        assert_eq!(mixed.finish(), a);
        assert_eq!(a, b);
        assert_eq!(a.crc(Algo::Crc32c), Some(checksum(Algo::Crc32c, &data)));
        assert_eq!(a.like(&offered), Some(offered));
        // A CRC the source offers is computed beside ours; no MD5 then.
        let want = Want::for_copy(Some(Algo::Crc32c), Some(Sum::Crc(Algo::Crc64Nvme, 0)));
        assert_eq!((want.crcs, want.md5), ([Some(Algo::Crc32c), Some(Algo::Crc64Nvme)], false));
        assert_eq!(checksum(Algo::Crc32, b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn parts_by_crcs_with_md5_fed_apart_equal_one_stream() {
        let data: Vec<u8> = (0..200_003u32).map(|i| (i * 7 % 253) as u8).collect();
        let want = Want { crcs: [Some(Algo::Crc32c), Some(Algo::Crc64Nvme)], md5: true };
        let mut whole = Hasher::new(want);
        whole.update(&data);
        // Parts summed chunk by chunk as they arrive (PartCrcs), folded in order by length;
        // MD5 fed the same bytes afterwards, as a copy into a file reads them back.
        let mut parts = Hasher::new(want);
        for part in data.chunks(65_541) {
            let mut crcs = PartCrcs::new(&want);
            for chunk in part.chunks(4_099) {
                crcs.update(chunk);
            }
            assert_eq!(crcs.finish(), part_crcs(&want, &[part]));
            parts.append_crcs(crcs.finish(), part.len() as u64);
        }
        for chunk in data.chunks(1 << 16) {
            parts.update_md5(chunk);
        }
        assert_eq!(parts.finish(), whole.finish());
    }

    #[test]
    fn running_equals_one_shot() {
        let mut r = Running::new(Algo::Crc32c);
        r.update(b"1234");
        r.update(b"56789");
        assert_eq!(r.finish(), checksum(Algo::Crc32c, b"123456789"));
    }
}
