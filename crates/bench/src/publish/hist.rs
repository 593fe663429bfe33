//! Latencies in fixed memory: a log-linear histogram (as HdrHistogram does) with 128 buckets per
//! power of two, so a quantile is within 1% of the exact one however long the point runs.

/// Bits of each value kept below its leading one: 2^7 = 128 buckets per power of two.
const SUB_BITS: u32 = 7;
const SUB_BUCKETS: usize = 1 << SUB_BITS;
/// Values below `SUB_BUCKETS` are exact; each power of two above has `SUB_BUCKETS` buckets.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB_BUCKETS;

/// Counts of nanosecond latencies.
#[derive(Clone)]
pub(crate) struct Histogram {
    counts: Box<[u64]>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
        }
    }
}

/// The bucket of `value`.
fn index(value: u64) -> usize {
    if value < SUB_BUCKETS as u64 {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    let mantissa = value >> (exponent - SUB_BITS);
    (exponent - SUB_BITS + 1) as usize * SUB_BUCKETS + (mantissa as usize - SUB_BUCKETS)
}

/// The middle of bucket `index`'s range of values.
fn middle(index: usize) -> u64 {
    if index < SUB_BUCKETS {
        return index as u64;
    }
    let exponent = (index / SUB_BUCKETS) as u32 + SUB_BITS - 1;
    let mantissa = (index % SUB_BUCKETS + SUB_BUCKETS) as u64;
    let shift = exponent - SUB_BITS;
    let low = mantissa << shift;
    low + ((1u64 << shift) >> 1)
}

impl Histogram {
    pub(crate) fn record(&mut self, value_ns: u64) {
        self.counts[index(value_ns)] += 1;
        self.total += 1;
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// The `quantile` (0..=1) by the nearest-rank method, in nanoseconds; `None` when empty.
    pub(crate) fn quantile_ns(&self, quantile: f64) -> Option<u64> {
        debug_assert!((0.0..=1.0).contains(&quantile));
        if self.total == 0 {
            return None;
        }
        let rank = ((quantile * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(middle(bucket));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_within_one_percent() {
        for value in
            (0..5000u64)
                .chain((0..60).map(|s| 1u64 << s))
                .chain([u64::MAX, 999_999, 123_456_789])
        {
            let bucket = index(value);
            assert!(bucket < BUCKETS, "{value}");
            let back = middle(bucket) as f64;
            assert!(
                (back - value as f64).abs() <= value as f64 / 100.0 + 0.5,
                "{value} -> {back}"
            );
        }
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let mut histogram = Histogram::default();
        assert_eq!(histogram.quantile_ns(0.5), None);
        for value in 1..=100u64 {
            histogram.record(value * 1000);
        }
        let p50 = histogram.quantile_ns(0.5).expect("not empty") as f64;
        let p99 = histogram.quantile_ns(0.99).expect("not empty") as f64;
        assert!((p50 - 50_000.0).abs() <= 500.0, "{p50}");
        assert!((p99 - 99_000.0).abs() <= 990.0, "{p99}");
        let mut other = Histogram::default();
        other.record(7);
        histogram.merge(&other);
        assert_eq!(histogram.total, 101);
        assert_eq!(histogram.quantile_ns(0.0), Some(7));
    }
}
