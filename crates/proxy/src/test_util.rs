//! Helpers shared by the unit tests.

/// A small deterministic generator, so generated cases are the same on every run.
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    /// A number below `n`.
    pub(crate) fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}
