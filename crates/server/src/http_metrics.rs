//! Request counts and latencies per route and status, for `/metrics`.

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

/// HTTP counters.
#[derive(Default)]
pub struct HttpMetrics {
    series: Mutex<SeriesMap>,
}

impl HttpMetrics {
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
        let _ = writeln!(
            out,
            "# HELP cairn_http_requests_total HTTP requests by method, route and status."
        );
        let _ = writeln!(out, "# TYPE cairn_http_requests_total counter");
        for ((method, route), series) in all.iter() {
            let series = series
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (status, count) in &series.by_status {
                let _ = writeln!(
                    out,
                    "cairn_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP cairn_http_request_seconds HTTP request latency by method and route."
        );
        let _ = writeln!(out, "# TYPE cairn_http_request_seconds histogram");
        for ((method, route), series) in all.iter() {
            let series = series
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            series
                .latency
                .write_prometheus(out, "cairn_http_request_seconds", &labels);
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
    if let Some(series) = metrics.series(&method, &route) {
        let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut series = series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *series
            .by_status
            .entry(response.status().as_u16())
            .or_default() += 1;
        series.latency.observe_us(elapsed_us);
    }
    response
}
