//! Request counts and latencies per route and status, for `/metrics`: HTTP requests by method,
//! route template and status; gRPC calls by transport (`unary`, `pipeline`), method and code.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use cairn_log::metrics::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Most distinct (method, route) series; routes are the router's templates, so this bounds only
/// against bugs, not clients.
const SERIES_MAX: usize = 256;

#[derive(Default)]
struct Series {
    by_status: BTreeMap<u16, u64>,
    latency: Histogram,
}

/// Series by (method, route template).
type SeriesMap = BTreeMap<(String, String), Arc<Mutex<Series>>>;

/// Request counters of one front.
pub struct HttpMetrics {
    series: Mutex<SeriesMap>,
    /// Metric name prefix: `cairn_http` or `cairn_grpc`.
    prefix: &'static str,
    /// Label names of the two parts of a series key, and of the status.
    labels: [&'static str; 3],
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            series: Mutex::default(),
            prefix: "cairn_http",
            labels: ["method", "route", "status"],
        }
    }
}

impl HttpMetrics {
    /// The counters of the gRPC front: by transport (`unary` or `pipeline`), method and code.
    #[must_use]
    pub fn grpc() -> HttpMetrics {
        HttpMetrics {
            series: Mutex::default(),
            prefix: "cairn_grpc",
            labels: ["transport", "method", "code"],
        }
    }

    /// Counts one request of `series_a`/`series_b` that ended with `status` after `elapsed_us`.
    pub fn observe(&self, series_a: &str, series_b: &str, status: u16, elapsed_us: u64) {
        if let Some(series) = self.series(series_a, series_b) {
            let mut series = series
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *series.by_status.entry(status).or_default() += 1;
            series.latency.observe_us(elapsed_us);
        }
    }

    fn series(&self, method: &str, route: &str) -> Option<Arc<Mutex<Series>>> {
        let mut all = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (method.to_string(), route.to_string());
        if let Some(series) = all.get(&key) {
            return Some(Arc::clone(series));
        }
        if all.len() >= SERIES_MAX {
            return None;
        }
        let series = Arc::new(Mutex::new(Series::default()));
        all.insert(key, Arc::clone(&series));
        Some(series)
    }

    /// Writes the counters and latency histograms in Prometheus text format.
    pub fn write_prometheus(&self, out: &mut String) {
        let all = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (prefix, [a, b, status_label]) = (self.prefix, self.labels);
        let _ = writeln!(
            out,
            "# HELP {prefix}_requests_total Requests by {a}, {b} and {status_label}."
        );
        let _ = writeln!(out, "# TYPE {prefix}_requests_total counter");
        for ((first, second), series) in all.iter() {
            let series = series
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (status, count) in &series.by_status {
                let _ = writeln!(
                    out,
                    "{prefix}_requests_total{{{a}=\"{first}\",{b}=\"{second}\",{status_label}=\"{status}\"}} {count}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP {prefix}_request_seconds Request latency by {a} and {b}."
        );
        let _ = writeln!(out, "# TYPE {prefix}_request_seconds histogram");
        let name = format!("{prefix}_request_seconds");
        for ((first, second), series) in all.iter() {
            let series = series
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let labels = format!("{a}=\"{first}\",{b}=\"{second}\"");
            series.latency.write_prometheus(out, &name, &labels);
        }
    }
}

/// The middleware: times every request and counts it under its route template (never the raw
/// path, which would let clients create series).
pub(crate) async fn record(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let response = next.run(request).await;
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    metrics.observe(&method, &route, response.status().as_u16(), elapsed_us);
    response
}
