//! Min / median / max: the one statistic the benchmark reports, for runs and for the report.

use serde::{Deserialize, Serialize};

/// Min, median and max of the finite values of a series (`n` of them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Stats {
    /// The statistics of `values`, non-finite ones left out. With none left, `n` is 0 and the
    /// figures are NaN, which the report prints as such rather than as a made-up number.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        match (v.first(), v.last()) {
            (Some(&min), Some(&max)) => {
                let median = if n % 2 == 1 {
                    v[n / 2]
                } else {
                    (v[n / 2 - 1] + v[n / 2]) / 2.0
                };
                Self { n, min, median, max }
            }
            _ => Self {
                n: 0,
                min: f64::NAN,
                median: f64::NAN,
                max: f64::NAN,
            },
        }
    }

    /// The statistics of one field over a series of runs.
    pub fn of_field<T>(runs: &[T], field: impl Fn(&T) -> f64) -> Self {
        Self::of(runs.iter().map(field))
    }

    /// The same figures divided by 1000 (milliseconds to seconds).
    pub fn in_seconds(self) -> Self {
        Self {
            min: self.min / 1e3,
            median: self.median / 1e3,
            max: self.max / 1e3,
            ..self
        }
    }
}

/// The median of one field over a series of runs (NaN when there are none).
pub fn median<T>(runs: &[T], field: impl Fn(&T) -> f64) -> f64 {
    Stats::of_field(runs, field).median
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_take_min_median_max_of_the_finite_values() {
        let s = Stats::of([3.0, 1.0, 2.0, f64::NAN]);
        assert_eq!((s.n, s.min, s.median, s.max), (3, 1.0, 2.0, 3.0));
        assert_eq!(Stats::of([4.0, 1.0]).median, 2.5);
        let none = Stats::of([]);
        assert_eq!(none.n, 0);
        assert!(none.median.is_nan());
    }

    #[test]
    fn fields_and_seconds() {
        let runs = [(1, 1500.0), (2, 500.0), (3, 1000.0)];
        assert_eq!(median(&runs, |r| r.1), 1000.0);
        let s = Stats::of_field(&runs, |r| r.1).in_seconds();
        assert_eq!((s.n, s.min, s.median, s.max), (3, 0.5, 1.0, 1.5));
    }
}
