//! A segmented sieve of Eratosthenes over odd numbers: pure logic, tested natively.

/// Numbers per segment: 2^20 (the sieve of a segment holds 2^19 bytes, one per odd number).
pub const SEGMENT: u64 = 1 << 20;

/// Largest accepted `below`: 10^14 (base primes up to 10^7, a few MiB of memory).
pub const MAX_BELOW: u64 = 100_000_000_000_000;

/// Integer square root: the largest `r` with `r * r <= n`.
pub fn isqrt(n: u64) -> u64 {
    let mut r = (n as f64).sqrt() as u64;
    while r.checked_mul(r).is_none_or(|s| s > n) {
        r -= 1;
    }
    while (r + 1).checked_mul(r + 1).is_some_and(|s| s <= n) {
        r += 1;
    }
    r
}

/// All primes `<= limit`, by a plain sieve (odd numbers only).
pub fn primes_up_to(limit: u64) -> Vec<u64> {
    if limit < 2 {
        return Vec::new();
    }
    // is_composite[i] is for the odd number 2i + 1 (u64 arithmetic: usize is 32 bits on wasm32).
    let mut is_composite = vec![false; (limit / 2 + 1) as usize];
    let mut primes = vec![2];
    let mut p = 3u64;
    while p <= limit {
        if !is_composite[(p / 2) as usize] {
            primes.push(p);
            let mut m = p * p;
            while m <= limit {
                is_composite[(m / 2) as usize] = true;
                m += 2 * p;
            }
        }
        p += 2;
    }
    primes
}

/// Counts the primes in segments of numbers below a bound, reusing one scratch buffer.
pub struct Sieve {
    /// Odd primes `p` with `p * p < below`.
    base: Vec<u64>,
    scratch: Vec<bool>,
}

impl Sieve {
    /// A sieve for numbers below `below` (at most [`MAX_BELOW`]).
    pub fn new(below: u64) -> Self {
        let base = primes_up_to(isqrt(below.saturating_sub(1))).into_iter().filter(|&p| p != 2).collect();
        Sieve { base, scratch: Vec::new() }
    }

    /// The number of primes `p` with `lo <= p < hi` (`hi` at most the sieve's `below`).
    pub fn count(&mut self, lo: u64, hi: u64) -> u64 {
        let mut count = u64::from(lo <= 2 && 2 < hi);
        let start = lo.max(3) | 1; // first odd number >= max(lo, 3)
        if start >= hi {
            return count;
        }
        let odds = ((hi - start).div_ceil(2)) as usize; // odd numbers in [start, hi)
        self.scratch.clear();
        self.scratch.resize(odds, true);
        for &p in &self.base {
            let square = p * p;
            if square >= hi {
                break;
            }
            let mut m = square.max(start.div_ceil(p) * p);
            if m % 2 == 0 {
                m += p;
            }
            let mut j = ((m - start) / 2) as usize;
            while j < odds {
                self.scratch[j] = false;
                j += p as usize;
            }
        }
        count += self.scratch.iter().filter(|&&b| b).count() as u64;
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_below(n: u64, segment: u64) -> u64 {
        let mut sieve = Sieve::new(n);
        let (mut lo, mut total) = (0, 0);
        while lo < n {
            let hi = (lo + segment).min(n);
            total += sieve.count(lo, hi);
            lo = hi;
        }
        total
    }

    fn naive(n: u64) -> u64 {
        (2..n).filter(|&k| (2..k).take_while(|d| d * d <= k).all(|d| k % d != 0)).count() as u64
    }

    #[test]
    fn small_bounds_match_naive() {
        for n in 0..600 {
            for segment in [1, 2, 3, 7, 16, 64, SEGMENT] {
                assert_eq!(count_below(n, segment), naive(n), "n={n} segment={segment}");
            }
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(count_below(100, SEGMENT), 25);
        assert_eq!(count_below(1_000_000, SEGMENT), 78_498);
        assert_eq!(count_below(10_000_000, 1 << 18), 664_579);
        assert_eq!(count_below(10_000_000, SEGMENT), 664_579);
    }

    #[test]
    fn isqrt_is_exact() {
        for n in [0u64, 1, 2, 3, 4, 15, 16, 17, 999_999, 1_000_000, u64::MAX] {
            let r = isqrt(n);
            assert!(r * r <= n && (r + 1).checked_mul(r + 1).is_none_or(|s| s > n), "n={n}");
        }
    }
}
