//! Prometheus metrics. Labels carry routes (templates, never concrete paths with ids), status
//! codes and tenant ids only: no subject or payload data can reach a metric.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder: installed once, shared by every server in the process.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (an embedding program's): render an empty one.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

/// The figures an operator alerts on after each sweep: how much is overdue (kept past its
/// retention, by holds or failures), how old the oldest overdue record is, when the last
/// sweep succeeded, and how much was destroyed.
pub fn record_sweep(now: jiff::Timestamp, report: &crate::retention::SweepReport) {
    let overdue: u64 = report.held.iter().map(|(b, _)| b.records).sum();
    let oldest = report.held.iter().map(|(b, _)| b.oldest_expiry).min();
    let age = oldest.map_or(0.0, |t| (now - t).get_seconds().max(0) as f64);
    metrics::gauge!("custodian_retention_overdue_records").set(overdue as f64);
    metrics::gauge!("custodian_retention_oldest_overdue_age_seconds").set(age);
    metrics::gauge!("custodian_retention_last_sweep_timestamp_seconds").set(now.as_second() as f64);
    let records: u64 = report.destroyed.iter().map(|c| c.record_count).sum();
    metrics::counter!("custodian_retention_records_destroyed_total").increment(records);
    metrics::counter!("custodian_retention_bytes_destroyed_total")
        .increment(report.bytes_destroyed);
    metrics::counter!("custodian_retention_certificates_total")
        .increment(report.destroyed.len() as u64);
}
