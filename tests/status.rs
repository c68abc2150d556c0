//! `s3upfs status` against a real mount on Garage: the progress of a file being
//! uploaded (bytes acknowledged growing while S3 answers slowly), the file gone from
//! the list after close, the totals, the live `--watch` screen under a pty, and the
//! Prometheus endpoint.

mod common;

use std::time::Duration;

use common::fault_proxy::{Fault, FaultProxy, Op, Rule, When};
use common::{Mount, S3Server, run_cli, via_proxy};

/// `s3upfs status MOUNTPOINT --json`, parsed: the one mount's report.
fn status_of(mount: &Mount) -> serde_json::Value {
    let (status, stdout, stderr) = run_cli(
        &["status", mount.path().to_str().expect("utf-8"), "--json"],
        &[],
    );
    assert!(status.success(), "status failed: {stderr}");
    let reports: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(reports.as_array().map(Vec::len), Some(1), "{stdout}");
    reports[0].clone()
}

#[test]
fn status_shows_a_slow_upload_progressing_then_gone_after_close_and_watch_draws_it() {
    let server = S3Server::garage();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let mount = Mount::new(&through, &["--metrics-addr", &metrics_addr]);
    // Part 2's answer is held back 3 s: the other parts are acknowledged meanwhile, so
    // a sample sees some of the file in S3 and not all of it.
    proxy.add_rule(
        Rule::new(
            Op::UploadPart,
            When::Always,
            Fault::Delay(Duration::from_secs(3)),
        )
        .part(2),
    );
    let path = mount.join("slow.bin");
    let writer = std::thread::spawn(move || {
        let data = vec![7u8; 48 << 20];
        std::fs::write(&path, data)
    });
    let mut acknowledged = Vec::new();
    for _ in 0..100 {
        let report = status_of(&mount);
        if let Some(file) = report["writing"].as_array().and_then(|w| w.first()) {
            assert_eq!(file["key"], "slow.bin");
            acknowledged.push(file["bytes_acknowledged"].as_u64().expect("number"));
        }
        if writer.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    writer.join().expect("writer").expect("write");
    let distinct: std::collections::BTreeSet<u64> = acknowledged.iter().copied().collect();
    // At least one sample between none and all of the file, and never a step back.
    assert!(
        distinct.len() >= 2
            && acknowledged.iter().any(|&a| a > 0 && a < 48 << 20)
            && acknowledged.windows(2).all(|w| w[0] <= w[1]),
        "bytes acknowledged must grow while the upload runs: {acknowledged:?}"
    );
    let report = status_of(&mount);
    assert_eq!(report["writing"], serde_json::json!([]), "gone after close");
    assert_eq!(report["totals"]["objects_uploaded"], 1);
    assert_eq!(report["totals"]["bytes_uploaded"], 48 << 20);
    assert!(
        report["source"]
            .as_str()
            .is_some_and(|s| s.contains(&server.bucket()))
    );
    let metrics = http_get(&metrics_addr, "/metrics");
    assert!(
        metrics.contains("s3upfs_uploaded_objects_total 1")
            && metrics.contains(&format!("s3upfs_uploaded_bytes_total {}", 48 << 20)),
        "{metrics}"
    );

    // --watch, once, on a terminal: a pty from script(1), its screen captured.
    proxy.set_fault(
        Op::UploadPart,
        When::Always,
        Fault::Delay(Duration::from_millis(1500)),
    );
    let path = mount.join("watched.bin");
    let writer = std::thread::spawn(move || std::fs::write(&path, vec![1u8; 24 << 20]));
    std::thread::sleep(Duration::from_millis(500));
    let watch = std::process::Command::new("timeout")
        .args(["3", "script", "-qfec"])
        .arg(format!(
            "{} status --watch {}",
            common::s3upfs_bin().display(),
            mount.path().display()
        ))
        .arg("/dev/null")
        .output()
        .expect("script");
    let screen = String::from_utf8_lossy(&watch.stdout);
    assert!(
        screen.contains("watched.bin") && screen.contains("parts done"),
        "the --watch screen:\n{screen}"
    );
    writer.join().expect("writer").expect("write");
    proxy.clear();
    mount.unmount();
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
}

#[test]
fn status_without_a_mount_says_so_and_fails() {
    let (status, _, stderr) = run_cli(&["status", "/nonexistent/mountpoint"], &[]);
    assert!(!status.success());
    assert!(
        stderr.contains("no s3upfs mount of this user at /nonexistent/mountpoint"),
        "{stderr}"
    );
}
