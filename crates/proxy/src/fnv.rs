//! FNV-1a, for maps looked up on every request whose keys come from the configuration (names,
//! server addresses) or bounded label sets, never from a client: they need speed on short
//! keys, not the flooding resistance of the standard hasher.

/// The hasher's state.
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Builds [`Fnv`] hashers.
pub(crate) type Build = std::hash::BuildHasherDefault<Fnv>;

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hasher};

    #[test]
    fn known_values_and_spread() {
        // The published FNV-1a 64 test values.
        let hash = |b: &[u8]| {
            let mut h = super::Fnv::default();
            h.write(b);
            h.finish()
        };
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
        let build = super::Build::default();
        let names: std::collections::HashSet<u64> = (0..1000)
            .map(|i| build.hash_one(format!("router-{i}")))
            .collect();
        assert_eq!(names.len(), 1000);
    }
}
