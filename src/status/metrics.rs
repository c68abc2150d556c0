//! The Prometheus text format of a [`Report`], encoded by prometheus-client (the
//! Prometheus project's Rust crate) rather than by hand.

use prometheus_client::encoding::text::encode as encode_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Report;

pub(super) fn encode(report: &Report) -> String {
    let status = &report.status;
    let totals = &status.totals;
    let mut registry = Registry::with_prefix("s3upfs");
    let counters: [(&str, &str, u64); 4] = [
        (
            "uploaded_bytes",
            "Bytes S3 acknowledged since the mount",
            totals.bytes_uploaded,
        ),
        (
            "uploaded_objects",
            "Objects completed since the mount",
            totals.objects_uploaded,
        ),
        (
            "retries",
            "Part and object requests tried again",
            totals.retries,
        ),
        ("failures", "Uploads that failed", totals.failures),
    ];
    for (name, help, value) in counters {
        let counter: Counter = Counter::default();
        counter.inc_by(value);
        registry.register(name, help, counter);
    }
    let acknowledged: u64 = status.writing.iter().map(|f| f.bytes_acknowledged).sum();
    let written: u64 = status.writing.iter().map(|f| f.bytes_written).sum();
    let gauges: [(&str, &str, u64); 6] = [
        (
            "files_writing",
            "Files open for writing",
            status.writing.len() as u64,
        ),
        (
            "writing_written_bytes",
            "Bytes written to the files open for writing",
            written,
        ),
        (
            "writing_acknowledged_bytes",
            "Bytes of the files open for writing that S3 acknowledged",
            acknowledged,
        ),
        (
            "memory_in_use_bytes",
            "Part buffer memory in use",
            status.memory_in_use,
        ),
        (
            "memory_limit_bytes",
            "Part buffer memory limit (--max-memory)",
            status.memory_limit,
        ),
        (
            "inodes",
            "Names in the mount's inode table",
            status.inodes as u64,
        ),
    ];
    for (name, help, value) in gauges {
        let gauge: Gauge = Gauge::default();
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        registry.register(name, help, gauge);
    }
    let mut text = String::new();
    if encode_text(&mut text, &registry).is_err() {
        text.clear();
    }
    text
}
