//! Whole-object checksums computed while bytes stream through the engine.
//!
//! Parts of one object may be copied concurrently: each part gets its own CRC and the
//! parts are folded together in order with `checksum_combine`, so a multipart copy
//! still yields the checksum of the whole object.

use crc_fast::{checksum_combine, CrcAlgorithm, Digest};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    Crc32c,
    Crc64Nvme,
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
        }
    }

    fn crc(self) -> CrcAlgorithm {
        match self {
            Algo::Crc32c => CrcAlgorithm::Crc32Iscsi,
            Algo::Crc64Nvme => CrcAlgorithm::Crc64Nvme,
        }
    }

    /// Render a value the way manifests store it: fixed-width lowercase hex.
    pub fn hex(self, value: u64) -> String {
        match self {
            Algo::Crc32c => format!("{value:08x}"),
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
    fn running_equals_one_shot() {
        let mut r = Running::new(Algo::Crc32c);
        r.update(b"1234");
        r.update(b"56789");
        assert_eq!(r.finish(), checksum(Algo::Crc32c, b"123456789"));
    }
}
