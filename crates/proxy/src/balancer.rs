//! Load balancing over a service's servers: smooth weighted round robin (nginx's algorithm:
//! the same spread as weighted round robin without bursts) and power of two random choices
//! by requests in flight. Also used to pick among the children of a weighted service.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::config::Strategy;

/// Picks an index among weighted choices. Weights of zero are never picked.
#[derive(Debug)]
pub struct Balancer {
    weights: Vec<i64>,
    strategy: Strategy,
    /// Smooth WRR's current weights.
    current: Mutex<Vec<i64>>,
    in_flight: Vec<AtomicUsize>,
    seed: AtomicU64,
}

impl Balancer {
    /// A balancer over choices with these weights.
    pub fn new(weights: &[u32], strategy: Strategy) -> Balancer {
        Balancer {
            weights: weights.iter().map(|w| i64::from(*w)).collect(),
            strategy,
            current: Mutex::new(vec![0; weights.len()]),
            in_flight: weights.iter().map(|_| AtomicUsize::new(0)).collect(),
            seed: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        }
    }

    /// The weights this balancer was built with (to reuse its state across reloads).
    pub fn same_weights(&self, weights: &[u32]) -> bool {
        self.weights.len() == weights.len()
            && self
                .weights
                .iter()
                .zip(weights)
                .all(|(a, b)| *a == i64::from(*b))
    }

    /// The next choice, skipping those `usable` rejects; `None` when nothing is usable.
    pub fn pick(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        if let [w] = self.weights[..] {
            // One server: nothing to share between the threads picking it.
            return (w > 0 && usable(0)).then_some(0);
        }
        match self.strategy {
            Strategy::WeightedRoundRobin => self.pick_wrr(&usable),
            Strategy::PowerOfTwoChoices => self.pick_p2c(&usable),
        }
    }

    fn pick_wrr(&self, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = 0;
        let mut best: Option<usize> = None;
        for (i, w) in self.weights.iter().enumerate() {
            if *w <= 0 || !usable(i) {
                continue;
            }
            current[i] += w;
            total += w;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        current[b] -= total;
        Some(b)
    }

    fn pick_p2c(&self, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.weights.len())
            .filter(|i| self.weights[*i] > 0 && usable(*i))
            .collect();
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            n => {
                let r = self.random();
                let a = candidates[(r % n as u64) as usize];
                let mut b = candidates[((r >> 32) % n as u64) as usize];
                if a == b {
                    b = candidates[(((r >> 32) + 1) % n as u64) as usize];
                }
                let la = self.in_flight[a].load(Ordering::Relaxed);
                let lb = self.in_flight[b].load(Ordering::Relaxed);
                Some(if lb < la { b } else { a })
            }
        }
    }

    /// Marks a request to choice `i` as started; the guard marks it finished.
    pub fn start(&self, i: usize) -> InFlight<'_> {
        if let Some(c) = self.in_flight.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        InFlight { b: self, i }
    }

    fn random(&self) -> u64 {
        // splitmix64 over an atomic counter: cheap, lock-free, good enough to spread load.
        let mut z = self
            .seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A request in flight to one choice.
#[derive(Debug)]
pub struct InFlight<'a> {
    b: &'a Balancer,
    i: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.b.in_flight.get(self.i) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_wrr_spreads_by_weight_without_bursts() {
        let b = Balancer::new(&[5, 1, 1], Strategy::WeightedRoundRobin);
        let picks: Vec<usize> = (0..7).filter_map(|_| b.pick(|_| true)).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
        let b = Balancer::new(&[3, 1], Strategy::WeightedRoundRobin);
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[b.pick(|_| true).expect("usable")] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }

    #[test]
    fn zero_weights_and_unusable_choices_are_skipped() {
        let b = Balancer::new(&[0, 1, 1], Strategy::WeightedRoundRobin);
        for _ in 0..10 {
            assert_eq!(b.pick(|i| i != 1), Some(2));
        }
        assert_eq!(b.pick(|_| false), None);
        let b = Balancer::new(&[], Strategy::PowerOfTwoChoices);
        assert_eq!(b.pick(|_| true), None);
        for strategy in [Strategy::WeightedRoundRobin, Strategy::PowerOfTwoChoices] {
            let one = Balancer::new(&[3], strategy);
            assert_eq!(one.pick(|_| true), Some(0));
            assert_eq!(one.pick(|_| false), None);
            assert_eq!(Balancer::new(&[0], strategy).pick(|_| true), None);
        }
    }

    #[test]
    fn p2c_prefers_the_less_loaded() {
        let b = Balancer::new(&[1, 1], Strategy::PowerOfTwoChoices);
        let _busy: Vec<_> = (0..5).map(|_| b.start(0)).collect();
        for _ in 0..20 {
            assert_eq!(b.pick(|_| true), Some(1));
        }
    }
}
