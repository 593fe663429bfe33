//! Small, pure statistics over measured samples.

/// The `quantile` (0..=1) of `sorted` by the nearest-rank method; 0 for no samples.
pub(crate) fn quantile(sorted: &[u64], quantile: f64) -> u64 {
    debug_assert!((0.0..=1.0).contains(&quantile));
    debug_assert!(sorted.is_sorted());
    if sorted.is_empty() {
        return 0;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median, smallest and largest of `values` (the middle two averaged for an even count).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

pub(crate) fn spread(values: &[f64]) -> Spread {
    assert!(!values.is_empty(), "the spread of no values");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    };
    Spread {
        median,
        min: sorted[0],
        max: sorted[sorted.len() - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&samples, 0.5), 50);
        assert_eq!(quantile(&samples, 0.99), 99);
        assert_eq!(quantile(&samples, 1.0), 100);
        assert_eq!(quantile(&samples, 0.0), 1);
        assert_eq!(quantile(&[], 0.5), 0);
        assert_eq!(quantile(&[7], 0.99), 7);
    }

    #[test]
    fn the_median_of_an_even_count_averages_the_middle_two() {
        assert_eq!(
            spread(&[4.0, 1.0, 3.0, 2.0]),
            Spread {
                median: 2.5,
                min: 1.0,
                max: 4.0
            }
        );
        assert_eq!(
            spread(&[5.0]),
            Spread {
                median: 5.0,
                min: 5.0,
                max: 5.0
            }
        );
    }
}
