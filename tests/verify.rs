//! Whole-object checksums on Garage: every object the mount writes carries the CRC32C
//! of its bytes whatever its part layout, `getfattr` shows it, and `s3upfs verify`
//! compares a local tree with the bucket (or the mount) by HEADs alone, naming exactly
//! what differs.

mod common;

use std::path::Path;

use common::fault_proxy::{FaultProxy, Op};
use common::{Mount, S3Server, random_bytes, run_cli, via_proxy};

const MIB: usize = 1 << 20;

/// `s3upfs verify LOCAL TARGET --json` against `server`: exit code and report.
fn verify(server: &S3Server, local: &Path, target: &str) -> (i32, serde_json::Value) {
    let local = local.to_str().expect("utf-8");
    let (endpoint, region) = (server.endpoint(), server.region());
    let args = [
        "verify",
        local,
        target,
        "--json",
        "--endpoint-url",
        &endpoint,
        "--region",
        &region,
        "--force-path-style",
    ];
    let (access, secret) = (server.access_key(), server.secret_key());
    let env = [
        ("AWS_ACCESS_KEY_ID", access.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
    ];
    let (status, stdout, stderr) = run_cli(&args, &env);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {stdout}\n{stderr}"));
    (status.code().unwrap_or(-1), report)
}

fn crc32c_base64(data: &[u8]) -> String {
    aws_smithy_types::base64::encode(crc32c::crc32c(data).to_be_bytes())
}

fn names(report: &serde_json::Value, field: &str) -> Vec<String> {
    report[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {report}"))
        .iter()
        .map(|v| v.as_str().expect("a path").to_owned())
        .collect()
}

#[test]
fn verify_matches_every_part_layout_with_heads_only_and_names_exactly_what_changed() {
    let server = S3Server::garage();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    // Tiers of 3 parts: part 4 is the first of twice the size.
    let mount = Mount::new(&through, &["--part-size", "5MiB", "--parts-per-tier", "3"]);
    let local = tempfile::tempdir().expect("tempdir");
    let files: [(&str, usize); 6] = [
        ("empty", 0),
        ("one-byte", 1),
        ("one-put.bin", 3 * MIB),
        ("three-parts.bin", 12 * MIB),
        ("grown/six-parts.bin", 38 * MIB),
        ("grown/note.txt", 100),
    ];
    std::fs::create_dir(local.path().join("grown")).expect("mkdir");
    for (index, (name, size)) in files.iter().enumerate() {
        std::fs::write(local.path().join(name), random_bytes(*size, index as u64)).expect("write");
    }
    // A symbolic link is copied as one (an object in the bucket): neither compared nor
    // extra, by bucket or by mount.
    std::os::unix::fs::symlink("one-byte", local.path().join("link")).expect("symlink");
    let backup = mount.join("backup");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(local.path())
        .arg(&backup)
        .status()
        .expect("cp");
    assert!(copied.success());
    let client = server.client();
    let six = client.head("backup/grown/six-parts.bin").expect("uploaded");
    assert!(six.etag.ends_with("-6\""), "6 parts: {}", six.etag);
    // Every object has the CRC32C of its bytes, not a composite of its parts'.
    for (name, _) in files {
        let data = std::fs::read(local.path().join(name)).expect("read");
        assert_eq!(
            client.checksum_crc32c(&format!("backup/{name}")),
            Some(crc32c_base64(&data)),
            "{name}"
        );
    }
    // getfattr on the mount shows the value verify computes locally.
    let shown = mount.sh_ok(&format!(
        "getfattr --only-values -n user.s3upfs.crc32c {}",
        backup.join("three-parts.bin").display()
    ));
    let three = std::fs::read(local.path().join("three-parts.bin")).expect("read");
    assert_eq!(shown.trim(), crc32c_base64(&three));

    let url = format!("s3://{}/backup/", server.bucket());
    proxy.reset_counters();
    let (code, report) = verify(&through, local.path(), &url);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["matching"], 6, "{report}");
    assert_eq!(proxy.count(Op::GetObject), 0, "{}", proxy.summary());
    assert_eq!(proxy.count(Op::HeadObject), 6, "{}", proxy.summary());

    // Another client changes one byte of one object (keeping a CRC32C), puts an object
    // with no checksum beside a local file, and one that is not local at all; one local
    // file never made it.
    let mut altered = three.clone();
    altered[7 * MIB] ^= 1;
    client.put_crc32c("backup/three-parts.bin", altered);
    std::fs::write(local.path().join("foreign.txt"), b"same bytes").expect("write");
    client.put("backup/foreign.txt", b"same bytes".to_vec());
    client.put("backup/only-there", b"x".to_vec());
    std::fs::write(local.path().join("grown/not-copied"), b"y").expect("write");
    for target in [url.clone(), backup.to_str().expect("utf-8").to_owned()] {
        let (code, report) = verify(&through, local.path(), &target);
        assert_eq!(code, 1, "{target}: {report}");
        assert_eq!(report["matching"], 5, "{target}: {report}");
        assert_eq!(names(&report, "differing"), ["three-parts.bin"], "{target}");
        assert_eq!(names(&report, "unverifiable"), ["foreign.txt"], "{target}");
        assert_eq!(names(&report, "extra"), ["only-there"], "{target}");
        assert_eq!(names(&report, "missing"), ["grown/not-copied"], "{target}");
    }
    mount.unmount();
}
