//! Reliability of the write path against a misbehaving network and server: every test mounts
//! s3upfs on Garage through the fault-injecting proxy (tests/common/fault_proxy.rs) and checks
//! what lands in the bucket directly on Garage.
//!
//! - transient errors (500, 503, connection resets mid-body) on UploadPart are retried, and only
//!   the parts that failed are sent again;
//! - a part (or a small file's PutObject) corrupted in transit is rejected by the server's
//!   CRC32C check and sent again;
//! - an outage longer than the retry budget fails close() with EIO, leaves no object, and the
//!   multipart upload is aborted once the server is reachable again; the mount still works after;
//! - an outage shorter than the retry budget (1 s) is ridden out;
//! - the proxy itself forwards and classifies every operation s3upfs uses.
//!
//! Knob: `S3UPFS_RELIABILITY_FILES` (default 20) files of 50 MiB in the parallel-copy test.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::fault_proxy::{Fault, FaultProxy, Op, Record, Refusal, Rule, When};
use common::{
    Mount, RandomReader, S3Server, close_checked, make_temp_dir, random_bytes, via_proxy,
    write_random_file,
};

const MIB: usize = 1 << 20;
/// s3upfs's default `--part-size`.
const PART: usize = 8 * MIB;

fn parts_of(size: usize) -> usize {
    size.div_ceil(PART).max(1)
}

/// Polls `f` every 50 ms until it holds; panics with `what` after `timeout`.
fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Streams `len` bytes of `RandomReader::new(total, seed)` from `reader` into `file`, 1 MiB per
/// write (as cp does).
fn write_from(reader: &mut RandomReader, file: &mut fs::File, len: usize) -> std::io::Result<()> {
    let mut buf = vec![0u8; MIB];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB);
        reader.read_exact(&mut buf[..n]).expect("RandomReader");
        file.write_all(&buf[..n])?;
        left -= n;
    }
    Ok(())
}

/// Asserts the object `key` (read directly from Garage) is `random_bytes(size, seed)`.
fn assert_object(server: &S3Server, key: &str, size: usize, seed: u64) {
    let got = server
        .client()
        .get(key)
        .unwrap_or_else(|| panic!("object {key} is missing"));
    assert_eq!(got.len(), size, "{key}: size");
    let want = random_bytes(size, seed);
    if got != want {
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        panic!("{key}: bytes differ (first difference at {first:?})");
    }
}

/// Per (key, part number): UploadPart records in arrival order.
fn attempts_by_part(records: &[Record]) -> BTreeMap<(String, u32), Vec<Record>> {
    let mut by_part: BTreeMap<(String, u32), Vec<Record>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.op == Op::UploadPart) {
        by_part
            .entry((r.key.clone(), r.part_number.unwrap_or(0)))
            .or_default()
            .push(r.clone());
    }
    by_part
}

/// Every request from `since` on, one line each: time offset, op, part, what happened.
fn timeline(proxy: &FaultProxy, since: Instant) -> String {
    proxy
        .records()
        .iter()
        .filter(|r| r.at >= since)
        .map(|r| {
            format!(
                "  +{:>6.3}s {:?} {} part {:?}: {}",
                r.at.duration_since(since).as_secs_f64(),
                r.op,
                r.key,
                r.part_number,
                if r.refused {
                    "refused (reset)".to_string()
                } else {
                    format!("status {:?}", r.status)
                }
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Wall-clock time of day as the daemon logs it (UTC), to line the test's events up with
/// the daemon log.
fn utc_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let s = d.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    )
}

fn describe(r: &Record) -> String {
    format!(
        "#{} {:?} {} part {:?} fault {:?} status {:?}",
        r.seq, r.op, r.key, r.part_number, r.fault, r.status
    )
}

#[test]
fn transient_upload_part_faults_are_retried_and_only_failed_parts_are_resent() {
    let files: usize = std::env::var("S3UPFS_RELIABILITY_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let size = 50 * MIB;
    let server = S3Server::garage();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let mount = Mount::new(&through, &[]);

    let source = make_temp_dir("s3upfs-reliability-src-");
    let started = Instant::now();
    for i in 0..files {
        write_random_file(
            &source.path().join(format!("f{i:02}")),
            size as u64,
            1000 + i as u64,
        );
    }
    eprintln!(
        "{files} source files of 50 MiB written in {:.1?}",
        started.elapsed()
    );

    // ~10% of UploadPart requests fail: half with an error answer, half with a reset mid-body.
    proxy.set_fault(
        Op::UploadPart,
        When::Fraction { p: 0.10, seed: 7 },
        Fault::OneOf(vec![
            Fault::InternalError,
            Fault::SlowDown,
            Fault::ResetAfter(MIB as u64),
            Fault::ResetAfter(64 * 1024),
        ]),
    );
    let started = Instant::now();
    let out = mount.sh(&format!(
        "cd {src} && pids=(); for f in f*; do cp \"$f\" \"$MNT/$f\" & pids+=($!); done; \
         rc=0; for p in \"${{pids[@]}}\"; do wait \"$p\" || rc=1; done; exit $rc",
        src = source.path().display()
    ));
    let copy_time = started.elapsed();
    proxy.clear();
    eprintln!(
        "parallel cp of {files} x 50 MiB through the proxy: {copy_time:.1?}\n{}",
        proxy.summary()
    );
    assert!(
        out.status.success(),
        "parallel cp failed: {}\nstderr:\n{}\nproxy:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        proxy.summary()
    );

    let started = Instant::now();
    for i in 0..files {
        assert_object(&server, &format!("f{i:02}"), size, 1000 + i as u64);
    }
    eprintln!("{files} objects verified in {:.1?}", started.elapsed());
    assert!(server.client().list_multipart_uploads().is_empty());

    let parts = (files * parts_of(size)) as u64;
    let injected = proxy.injected_failures(Op::UploadPart);
    let sent = proxy.count(Op::UploadPart);
    eprintln!("UploadPart: {parts} parts, {injected} injected failures, {sent} requests");
    let errors = proxy.injected(Op::UploadPart, &Fault::InternalError)
        + proxy.injected(Op::UploadPart, &Fault::SlowDown);
    let resets = injected - errors;
    eprintln!("  of which {errors} error answers (500/503) and {resets} resets mid-body");
    assert!(
        errors > 0 && resets > 0,
        "both error answers and resets must have been injected"
    );
    assert_eq!(
        proxy.successes(Op::UploadPart),
        parts,
        "one success per part"
    );
    assert_eq!(
        sent,
        parts + injected,
        "UploadPart requests must be the parts plus one re-send per injected failure"
    );
    // The same per part: every attempt but the last was an injected failure.
    let by_part = attempts_by_part(&proxy.records());
    assert_eq!(by_part.len() as u64, parts);
    for ((key, part), attempts) in &by_part {
        let (last, earlier) = attempts.split_last().expect("at least one attempt");
        assert!(
            last.succeeded() && last.fault.is_none(),
            "{key} part {part}: last attempt {}",
            describe(last)
        );
        for a in earlier {
            assert!(
                a.fault.as_ref().is_some_and(Fault::is_failure),
                "{key} part {part} was re-sent although attempt {} had not failed",
                describe(a)
            );
        }
    }
    // Nothing else was retried: one CreateMultipartUpload and one Complete per file.
    assert_eq!(proxy.count(Op::CreateMultipartUpload), files as u64);
    assert_eq!(proxy.count(Op::CompleteMultipartUpload), files as u64);
}

#[test]
fn a_part_corrupted_in_transit_is_rejected_by_the_server_and_sent_again() {
    let server = S3Server::garage();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let mount = Mount::new(&through, &[]);
    let size = 30 * MIB;
    let source = make_temp_dir("s3upfs-reliability-src-");
    let src = source.path().join("corrupt");
    write_random_file(&src, size as u64, 77);

    proxy.add_rule(
        Rule::new(Op::UploadPart, When::Always, Fault::FlipByte)
            .part(2)
            .limit(1),
    );
    let started = Instant::now();
    let out = mount.sh(&format!("cp {} \"$MNT/corrupt\"", src.display()));
    eprintln!(
        "cp of 30 MiB with one corrupted part: {:.1?}",
        started.elapsed()
    );
    let attempts = proxy.records_of(Op::UploadPart);
    let listing: Vec<String> = attempts.iter().map(describe).collect();
    eprintln!("UploadPart requests:\n{}", listing.join("\n"));

    // Garage must have caught the flipped byte (otherwise the test below proves nothing).
    let flipped: Vec<&Record> = attempts
        .iter()
        .filter(|r| r.fault == Some(Fault::FlipByte))
        .collect();
    assert_eq!(flipped.len(), 1, "exactly one part was corrupted");
    let rejected = flipped[0].status;
    assert!(
        rejected.is_some_and(|s| (400..500).contains(&s)),
        "Garage did not reject the corrupted part: {}",
        describe(flipped[0])
    );
    assert!(
        out.status.success(),
        "cp failed after one corrupted part (answered {rejected:?} by Garage): s3upfs did not \
         send the part again.\nstderr: {}\ndaemon log (errors):\n{}",
        String::from_utf8_lossy(&out.stderr),
        error_lines(&mount.log())
    );
    assert_eq!(
        proxy.part_attempts_of("corrupt", 2),
        2,
        "part 2 must be sent exactly twice"
    );
    for part in [1, 3, 4] {
        assert_eq!(proxy.part_attempts_of("corrupt", part), 1, "part {part}");
    }
    assert_object(&server, "corrupt", size, 77);
    assert!(server.client().list_multipart_uploads().is_empty());
}

#[test]
fn a_small_file_corrupted_in_transit_is_rejected_by_the_server_and_sent_again() {
    let server = S3Server::garage();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let mount = Mount::new(&through, &[]);
    let size = MIB;
    let source = make_temp_dir("s3upfs-reliability-src-");
    let src = source.path().join("small");
    write_random_file(&src, size as u64, 78);

    proxy.add_rule(Rule::new(Op::PutObject, When::Always, Fault::FlipByte).limit(1));
    let out = mount.sh(&format!("cp {} \"$MNT/small\"", src.display()));
    let attempts = proxy.records_of(Op::PutObject);
    let listing: Vec<String> = attempts.iter().map(describe).collect();
    eprintln!("PutObject requests:\n{}", listing.join("\n"));
    let rejected = attempts.first().and_then(|r| r.status);
    assert!(
        rejected.is_some_and(|s| (400..500).contains(&s)),
        "Garage did not reject the corrupted PutObject: {listing:?}"
    );
    assert!(
        out.status.success(),
        "cp failed after one corrupted PutObject (answered {rejected:?} by Garage): s3upfs did \
         not send it again.\nstderr: {}\ndaemon log (errors):\n{}",
        String::from_utf8_lossy(&out.stderr),
        error_lines(&mount.log())
    );
    assert_eq!(attempts.len(), 2, "the object must be sent exactly twice");
    assert_object(&server, "small", size, 78);
}

/// The daemon's ERROR and WARN lines.
fn error_lines(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_outage_longer_than_the_retry_budget_fails_close_with_eio_and_the_upload_is_aborted_later() {
    // MAX_ATTEMPTS = 6 with 200 ms initial backoff (full jitter, 10 s cap): at most
    // 0.2 + 0.4 + 0.8 + 1.6 + 3.2 = 6.2 s of backoff per request, then the abort's own
    // retries. 30 s is well beyond.
    const OUTAGE: Duration = Duration::from_secs(30);
    let server = S3Server::garage();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let mount = Mount::new(&through, &[]);
    let direct = server.client();

    let total = 40 * MIB;
    let mut reader = RandomReader::new(total as u64, 55);
    let mut file = fs::File::create(mount.join("doomed")).expect("create");
    write_from(&mut reader, &mut file, 24 * MIB).expect("writes before the outage");
    // Part 2 went up: the multipart upload exists on the server.
    wait_until(Duration::from_secs(60), "part 2 uploaded", || {
        proxy.successes(Op::UploadPart) >= 1
    });
    let uploads = direct.list_multipart_uploads();
    assert_eq!(uploads.len(), 1, "one upload in progress: {uploads:?}");

    proxy.refuse_for(OUTAGE);
    let outage_start = Instant::now();
    let more = write_from(&mut reader, &mut file, total - 24 * MIB);
    let closed = close_checked(file);
    let close_time = outage_start.elapsed();
    eprintln!(
        "writes during the outage: {more:?}; close: {closed:?} after {close_time:.1?}\n{}",
        proxy.summary()
    );
    if let Err(e) = &more {
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "write error: {e}");
    }
    let err = closed.expect_err("close must fail when the server stays unreachable");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "close error: {err}");
    assert!(
        proxy.is_refusing(),
        "close returned only after the outage ended ({close_time:?}): it should have given up \
         within the retry budget"
    );
    let log = mount.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("\"doomed\"")),
        "the daemon log must name the file in an error:\n{}",
        error_lines(&log)
    );
    assert!(
        direct.get("doomed").is_none(),
        "a failed upload must not appear"
    );
    assert_eq!(
        direct.list_multipart_uploads().len(),
        1,
        "the abort cannot have reached the server during the outage"
    );

    // Back again: the background retry aborts the upload.
    proxy.accept();
    assert!(proxy.wait_accepting(Duration::from_secs(5)));
    let back = Instant::now();
    wait_until(
        Duration::from_secs(30),
        "the multipart upload is aborted once the server is reachable",
        || direct.list_multipart_uploads().is_empty(),
    );
    eprintln!(
        "upload aborted {:.1?} after the proxy accepted again",
        back.elapsed()
    );
    let aborts: Vec<String> = proxy
        .records_of(Op::AbortMultipartUpload)
        .iter()
        .map(describe)
        .collect();
    eprintln!("AbortMultipartUpload requests:\n{}", aborts.join("\n"));
    assert!(proxy.successes(Op::AbortMultipartUpload) >= 1);
    assert!(direct.get("doomed").is_none());

    // The mount is still usable, transient faults included: the outage must not have used up
    // the client's retries for good.
    proxy.set_fault(
        Op::UploadPart,
        When::Nths(vec![1, 3]),
        Fault::ResetAfter(MIB as u64),
    );
    proxy.set_fault(Op::UploadPart, When::Nth(2), Fault::InternalError);
    let size = 20 * MIB;
    let source = make_temp_dir("s3upfs-reliability-src-");
    let src = source.path().join("after");
    write_random_file(&src, size as u64, 56);
    let out = mount.sh(&format!("cp {} \"$MNT/after\"", src.display()));
    eprintln!("after the outage:\n{}", proxy.summary());
    assert!(
        out.status.success(),
        "cp after the outage failed ({}): {}\ndaemon log (errors):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        error_lines(&tail_after(&mount.log(), "\"after\""))
    );
    assert_object(&server, "after", size, 56);
    assert!(direct.list_multipart_uploads().is_empty());
}

/// The log from the first line mentioning `needle` on.
fn tail_after(log: &str, needle: &str) -> String {
    match log.find(needle) {
        Some(i) => log[log[..i].rfind('\n').map_or(0, |j| j + 1)..].to_string(),
        None => String::new(),
    }
}

#[test]
fn an_outage_shorter_than_the_retry_budget_is_ridden_out() {
    let server = S3Server::garage();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let mount = Mount::new(&through, &[]);

    let total = 100 * MIB;
    let mut reader = RandomReader::new(total as u64, 66);
    let mut file = fs::File::create(mount.join("blip")).expect("create");
    let started = Instant::now();
    write_from(&mut reader, &mut file, 40 * MIB).expect("writes before the outage");
    wait_until(Duration::from_secs(60), "a part uploaded", || {
        proxy.successes(Op::UploadPart) >= 1
    });
    // Responses held back a little, so that parts are in flight when the outage starts.
    proxy.set_fault(
        Op::UploadPart,
        When::Always,
        Fault::Delay(Duration::from_millis(300)),
    );
    write_from(&mut reader, &mut file, 24 * MIB).expect("writes before the outage");
    wait_until(Duration::from_secs(10), "a part in flight", || {
        proxy.in_flight() >= 1
    });
    let before = proxy.count(Op::UploadPart);
    // Accept-and-reset, so that every attempt during the outage shows in the records.
    let outage_start = Instant::now();
    let outage_utc = utc_now();
    proxy.refuse_for_with(Duration::from_secs(1), Refusal::Reset);
    write_from(&mut reader, &mut file, total - 64 * MIB).expect("writes across the outage");
    let closed = close_checked(file);
    eprintln!(
        "100 MiB across a 1 s outage: close {closed:?} after {:.1?}\n{}",
        started.elapsed(),
        proxy.summary()
    );
    closed.unwrap_or_else(|e| {
        panic!(
            "close failed after a 1 s outage (from {outage_utc}): {e}\nrequests since the outage \
             began:\n{}\ndaemon log (errors):\n{}",
            timeline(&proxy, outage_start),
            error_lines(&mount.log())
        )
    });
    let records = proxy.records_of(Op::UploadPart);
    let cut = records
        .iter()
        .filter(|r| r.at < outage_start && r.finished && r.status.is_none())
        .count();
    let refused = records.iter().filter(|r| r.refused).count();
    eprintln!(
        "{cut} UploadPart requests in flight were cut by the outage, {refused} attempts were \
         refused during it; {} UploadPart requests in all ({before} before it)",
        records.len()
    );
    assert!(cut >= 1, "no request was in flight when the outage began");
    assert_object(&server, "blip", total, 66);
    assert!(server.client().list_multipart_uploads().is_empty());
    assert_eq!(proxy.successes(Op::UploadPart), parts_of(total) as u64);
}

/// The proxy itself, without a mount: every operation s3upfs uses goes through unchanged
/// (SigV4 still valid, keep-alive, 404s, HEAD) and is classified right; an error answer
/// keeps the connection usable; a refusal ends and the same port serves again.
#[test]
fn the_proxy_forwards_and_classifies_every_operation() {
    let server = S3Server::garage();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let c = through.client();
    c.put("a b+c", vec![1u8; 1000]);
    assert_eq!(c.get("a b+c").as_deref(), Some(&[1u8; 1000][..]));
    assert_eq!(c.head("a b+c").map(|h| h.size), Some(1000));
    assert!(c.head("nope").is_none());
    assert!(c.get("nope").is_none());
    assert_eq!(c.list(""), vec!["a b+c".to_string()]);
    let id = c.create_multipart("m");
    let e1 = c.upload_part("m", &id, 1, random_bytes(5 * MIB, 1));
    assert_eq!(c.list_multipart_uploads().len(), 1);
    assert_eq!(c.list_parts("m", &id), vec![(1, 5 * MIB as u64)]);
    proxy.set_fault(Op::UploadPart, When::Nth(1), Fault::InternalError);
    let e2 = c.upload_part("m", &id, 2, vec![3u8; 10]);
    c.complete_multipart("m", &id, &[(1, e1), (2, e2)]);
    let id2 = c.create_multipart("gone");
    c.abort("gone", &id2);
    c.delete("a b+c");
    for (op, n) in [
        (Op::PutObject, 1),
        (Op::GetObject, 2),
        (Op::HeadObject, 2),
        (Op::ListObjectsV2, 1),
        (Op::CreateMultipartUpload, 2),
        (Op::UploadPart, 3),
        (Op::ListMultipartUploads, 1),
        (Op::ListParts, 1),
        (Op::CompleteMultipartUpload, 1),
        (Op::AbortMultipartUpload, 1),
        (Op::DeleteObject, 1),
    ] {
        assert_eq!(proxy.count(op), n, "{op:?}\n{}", proxy.summary());
    }
    assert_eq!(proxy.part_attempts(2), 2, "part 2: one 500, one success");
    assert_eq!(proxy.injected_failures(Op::UploadPart), 1);
    assert_eq!(
        server.client().get("m").map(|b| b.len()),
        Some(5 * MIB + 10)
    );

    // Refused, then back on the same port.
    proxy.refuse_for(Duration::from_millis(500));
    assert!(std::net::TcpStream::connect(proxy.addr()).is_err());
    assert!(proxy.wait_accepting(Duration::from_secs(5)));
    assert!(c.head("m").is_some());
}

/// A writer that outruns a slow server waits for memory on a thread of its own: `ls`,
/// `stat` and another file's close go on meanwhile.
#[test]
fn a_writer_blocked_on_memory_does_not_stall_ls_stat_or_other_closes() {
    let server = S3Server::garage();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let mount = Mount::new(
        &through,
        &["--max-memory", "16MiB", "--max-concurrency", "1"],
    );
    fs::write(mount.join("existing"), b"here").expect("write");
    // Every part takes 3 s: a 64 MiB writer spends most of its time waiting for memory.
    proxy.set_fault(
        Op::UploadPart,
        When::Always,
        Fault::Delay(Duration::from_secs(3)),
    );
    let big = mount.join("big");
    let writer = std::thread::spawn(move || {
        let data = random_bytes(64 * MIB, 8);
        let mut file = fs::File::create(&big).expect("create");
        file.write_all(&data).expect("write");
        drop(file);
    });
    wait_until(Duration::from_secs(30), "a part in flight", || {
        proxy.in_flight() >= 1
    });
    let names: Vec<String> = fs::read_dir(mount.path())
        .expect("ls while a writer waits")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(names.contains(&"existing".to_owned()), "{names:?}");
    assert_eq!(fs::metadata(mount.join("existing")).expect("stat").len(), 4);
    fs::write(mount.join("small"), b"closes while the big one waits").expect("small close");
    assert!(
        !writer.is_finished(),
        "the big writer should still be waiting on the slow server at this point"
    );
    assert_eq!(
        server.client().get("small").as_deref(),
        Some(&b"closes while the big one waits"[..])
    );
    writer.join().expect("big writer");
    assert_eq!(
        server.client().head("big").map(|h| h.size),
        Some(64 * MIB as u64)
    );
}

#[test]
fn a_delayed_delete_of_a_renamed_files_old_name_never_removes_a_new_file_of_that_name() {
    let server = S3Server::garage();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let mount = Mount::new(&through, &[]);
    let direct = server.client();

    // The old name's DeleteObject fails for every SDK attempt and the first retry, so
    // it lands at least half a second after rename has returned.
    proxy.set_fault(
        Op::DeleteObject,
        When::Nths((1..=7).collect()),
        Fault::SlowDown,
    );
    fs::write(mount.join("a"), b"old").expect("write a");
    let started = Instant::now();
    fs::rename(mount.join("a"), mount.join("b")).expect("rename a -> b");
    let rename_took = started.elapsed();
    let names: Vec<String> = fs::read_dir(mount.path())
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["b".to_owned()], "the old name is gone at once");
    assert!(
        !mount.join("a").exists(),
        "a lookup does not find the old key S3 still has"
    );
    fs::write(mount.join("a"), b"new").expect("a new file of the old name");
    wait_until(
        Duration::from_secs(60),
        "the old name's delete sent",
        || proxy.successes(Op::DeleteObject) >= 1,
    );
    assert_eq!(
        direct.get("a").as_deref(),
        Some(&b"new"[..]),
        "the new file survives the delayed delete (rename took {rename_took:?})"
    );
    assert_eq!(direct.get("b").as_deref(), Some(&b"old"[..]));
    assert!(
        proxy.injected_failures(Op::DeleteObject) >= 7,
        "{}",
        proxy.summary()
    );

    // A directory whose only file was renamed out is empty at once, delete pending or not.
    fs::create_dir(mount.join("e")).expect("mkdir e");
    fs::write(mount.join("e/x"), b"x").expect("write e/x");
    proxy.set_fault(
        Op::DeleteObject,
        When::Nths((1..=7).collect()),
        Fault::SlowDown,
    );
    fs::rename(mount.join("e/x"), mount.join("x")).expect("rename e/x -> x");
    fs::remove_dir(mount.join("e")).expect("rmdir right after renaming its file out");
    assert!(
        !direct.exists("e/x"),
        "rmdir waited for the old key's delete"
    );

    // Unmounting right after a rename still deletes the old name before the daemon exits.
    proxy.set_fault(
        Op::DeleteObject,
        When::Nths((1..=7).collect()),
        Fault::SlowDown,
    );
    fs::write(mount.join("c"), b"c").expect("write c");
    fs::rename(mount.join("c"), mount.join("d")).expect("rename c -> d");
    let status = mount.unmount();
    assert!(status.success(), "daemon exit: {status:?}");
    assert!(!direct.exists("c"), "old name deleted before exit");
    assert_eq!(direct.get("d").as_deref(), Some(&b"c"[..]));
}

/// M2: a CreateMultipartUpload that keeps failing through the SDK's own attempts (a
/// few seconds of 500s) is retried within the retry budget, like a part: the file lands.
#[test]
fn a_create_multipart_upload_failing_for_seconds_is_retried_within_the_budget() {
    let server = S3Server::garage();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let mount = Mount::new(&through, &[]);
    // More failures in a row than the SDK's 6 attempts of one request.
    proxy.add_rule(
        Rule::new(
            Op::CreateMultipartUpload,
            When::Always,
            Fault::InternalError,
        )
        .limit(9),
    );
    let size = 3 * PART;
    let mut reader = RandomReader::new(size as u64, 21);
    let mut file = fs::File::create(mount.join("late")).expect("create");
    write_from(&mut reader, &mut file, size).expect("writes");
    close_checked(file).unwrap_or_else(|e| {
        panic!(
            "close failed: {e}\ndaemon log (errors):\n{}",
            error_lines(&mount.log())
        )
    });
    assert_object(&server, "late", size, 21);
    assert!(
        proxy.count(Op::CreateMultipartUpload) >= 10,
        "the failures were seen: {}",
        proxy.summary()
    );
    assert!(server.client().list_multipart_uploads().is_empty());
}

/// L4: the upload is aborted by someone else (`s3upfs cleanup`, a lifecycle rule)
/// between its last part and Complete. close() fails, and the object that was under the
/// key before (same size) is neither taken for ours nor deleted.
#[test]
fn an_upload_aborted_elsewhere_before_completion_fails_close_and_keeps_the_old_object() {
    let server = S3Server::garage();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let mount = Mount::new(&through, &[]);
    let size = 3 * PART;
    write_random_file(&mount.join("f"), size as u64, 1);
    assert_object(&server, "f", size, 1);
    proxy.add_rule(
        Rule::new(
            Op::UploadPart,
            When::Always,
            Fault::Delay(Duration::from_secs(4)),
        )
        .key("f")
        .part(3),
    );
    proxy.reset_counters();
    let mut reader = RandomReader::new(size as u64, 2);
    let mut file = fs::File::create(mount.join("f")).expect("create");
    write_from(&mut reader, &mut file, size).expect("writes");
    // The last part goes out at close; its answer is held back 4 s by the proxy, after
    // Garage stored it. Meanwhile someone else aborts the upload.
    let closing = std::thread::spawn(move || close_checked(file));
    wait_until(Duration::from_secs(30), "the last part in flight", || {
        proxy.count(Op::UploadPart) >= 3 && proxy.in_flight() >= 1
    });
    std::thread::sleep(Duration::from_secs(1));
    let client = server.client();
    for (key, id) in client.list_multipart_uploads() {
        client.abort(&key, &id);
    }
    let closed = closing.join().expect("close thread");
    assert!(
        closed.is_err(),
        "close must fail: the upload was aborted elsewhere\n{}",
        error_lines(&mount.log())
    );
    assert_object(&server, "f", size, 1);
}

/// H2: a held chmod's self-copy of the object onto itself, still in flight when the
/// file is rewritten. The rewrite waits for it: the new PutObject is sent only after the
/// copy has answered, so the copy (of the old bytes) can never land after the new
/// object. The object ends with the new bytes and the chmod.
#[test]
fn a_rewrite_waits_for_a_held_chmods_self_copy_in_flight() {
    let server = S3Server::garage();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let mount = Mount::new(&through, &[]);
    mount.sh_ok("echo old > \"$MNT/f\"");
    std::thread::sleep(Duration::from_secs(2));
    proxy.set_fault(
        Op::CopyObject,
        When::Always,
        Fault::Delay(Duration::from_secs(3)),
    );
    mount.sh_ok("chmod 600 \"$MNT/f\"");
    wait_until(Duration::from_secs(10), "the self-copy sent", || {
        proxy.count(Op::CopyObject) >= 1
    });
    let copy_sent = proxy.records_of(Op::CopyObject)[0].at;
    mount.sh_ok("echo new > \"$MNT/f\"");
    let put = proxy
        .records_of(Op::PutObject)
        .into_iter()
        .filter(|r| r.key == "f" && r.at > copy_sent)
        .map(|r| r.at)
        .next()
        .expect("the rewrite's PutObject");
    assert!(
        put.duration_since(copy_sent) >= Duration::from_millis(2500),
        "the rewrite was sent {:?} after the self-copy, before its answer (3 s)",
        put.duration_since(copy_sent)
    );
    proxy.clear();
    std::thread::sleep(Duration::from_secs(2));
    let client = server.client();
    assert_eq!(client.get("f").as_deref(), Some(&b"new\n"[..]));
    assert_eq!(
        client
            .head("f")
            .and_then(|h| h.metadata.get("mode").cloned()),
        Some(format!("{}", libc::S_IFREG | 0o600)),
        "the held chmod rode with the rewrite"
    );
}

/// M7: a directory rename whose copies fail part way leaves nothing under the new name
/// (the copies made are taken back) and the directory intact. (Its other half, a key
/// over 1024 bytes being ENAMETOOLONG before anything is copied, cannot be shown on
/// Garage: its LMDB store refuses keys over about 500 bytes with a 503.)
#[test]
fn a_failed_directory_rename_leaves_no_partial_tree() {
    let server = S3Server::garage();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let mount = Mount::new(&through, &[]);
    fs::create_dir(mount.join("dir")).expect("mkdir");
    for name in ["a", "b", "c", "d", "e"] {
        fs::write(mount.join(format!("dir/{name}")), name).expect("write");
    }
    std::thread::sleep(Duration::from_secs(2));
    proxy.add_rule(Rule::new(Op::CopyObject, When::Always, Fault::InternalError).key("moved/c"));
    let renamed = fs::rename(mount.join("dir"), mount.join("moved"));
    assert!(renamed.is_err(), "the rename must fail");
    proxy.clear();
    let client = server.client();
    assert_eq!(
        client.list("moved/"),
        Vec::<String>::new(),
        "no partial copy"
    );
    for name in ["a", "b", "c", "d", "e"] {
        assert_eq!(
            client.get(&format!("dir/{name}")).as_deref(),
            Some(name.as_bytes())
        );
    }
}

/// A name whose delete is still queued (the file was renamed away a moment ago) is
/// taken by a rename that then fails (its copy keeps failing): the old object must not
/// come back. The queued delete is sent by the rename itself, not
/// dropped.
#[test]
fn a_queued_delete_taken_over_by_a_failed_rename_is_still_sent() {
    let server = S3Server::garage();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let mount = Mount::new(&through, &[]);
    fs::write(mount.join("first"), "first").expect("write");
    fs::write(mount.join("b"), "old b").expect("write");
    std::thread::sleep(Duration::from_secs(2));
    // The delete worker is busy with `first` for 3 s: `b`'s delete waits in the queue.
    proxy.set_fault(
        Op::DeleteObject,
        When::Always,
        Fault::Delay(Duration::from_secs(3)),
    );
    fs::rename(mount.join("first"), mount.join("first-moved")).expect("mv first");
    fs::rename(mount.join("b"), mount.join("c")).expect("mv b c");
    fs::write(mount.join("x"), "x").expect("write x");
    proxy.set_fault(Op::CopyObject, When::Always, Fault::InternalError);
    let error = fs::rename(mount.join("x"), mount.join("b")).expect_err("x cannot be copied");
    assert_eq!(error.raw_os_error(), Some(libc::EIO));
    proxy.clear();
    std::thread::sleep(Duration::from_secs(5));
    let client = server.client();
    assert_eq!(client.get("b"), None, "the old b came back");
    assert_eq!(client.get("c").as_deref(), Some(&b"old b"[..]));
}

/// rsync lost files under load (issue 15): a directory listing whose answer was taken
/// before our new directory's marker landed, and delivered late, dropped that
/// directory from the mount's table, so creating a file in it was ENOENT. Here the
/// proxy delivers the listing 3 s late (past the 1 s TTL) while the marker lands.
#[test]
fn a_late_listing_does_not_hide_a_directory_we_just_made() {
    let server = S3Server::garage();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let mount = Mount::new(&through, &[]);
    fs::create_dir(mount.join("sub")).expect("mkdir");
    proxy.set_fault(
        Op::ListObjectsV2,
        When::Nth(1),
        Fault::Delay(Duration::from_secs(3)),
    );
    // `ls` of the root: its LIST answer is taken now and delivered in 3 s, meanwhile the
    // held marker of `sub` lands (after 1 s) and its attributes expire.
    let root = mount.join("");
    let lister = std::thread::spawn(move || fs::read_dir(root).map(|d| d.count()));
    lister.join().expect("ls").expect("listing");
    proxy.clear();
    fs::write(mount.join("sub").join("file"), "x").expect("a file in the directory we made");
    assert_eq!(
        server.client().get("sub/file").as_deref(),
        Some(&b"x"[..]),
        "{}",
        mount.log()
    );
}
