//! Exercises the shared test harness (tests/common) without mounting anything.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn random_bytes_are_deterministic_prefixes_and_streamable() {
    let a = random_bytes(1 << 20, 7);
    assert_eq!(a, random_bytes(1 << 20, 7));
    assert_ne!(a, random_bytes(1 << 20, 8));
    assert_eq!(&a[..12_345], &random_bytes(12_345, 7)[..]);
    // Seed 0 works and the bytes look random (all 256 values, no long runs of zeros).
    let z = random_bytes(4096, 0);
    let mut seen = [false; 256];
    z.iter().for_each(|b| seen[*b as usize] = true);
    assert!(seen.iter().all(|s| *s));
    // RandomReader yields the same bytes whatever the read sizes.
    let mut r = RandomReader::new(a.len() as u64, 7);
    let mut got = Vec::new();
    let mut buf = [0u8; 13];
    let mut step = 1;
    loop {
        let n = r.read(&mut buf[..step]).expect("RandomReader::read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        step = step % 13 + 1;
        if got.len() > 100_000 {
            let mut rest = Vec::new();
            r.read_to_end(&mut rest).expect("read_to_end");
            got.extend_from_slice(&rest);
        }
    }
    assert_eq!(got, a);
}

#[test]
fn sh_captures_output_and_times_out() {
    let out = sh("echo out; echo err >&2; exit 3");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(sh_ok("echo hi"), "hi\n");

    // A background child holding the pipes must not make the timeout hang.
    let t = Instant::now();
    let out = sh_env("sleep 30 & sleep 30", &[], Duration::from_secs(1));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("[harness: killed"));

    // A background process left behind (like a daemonized mount) keeps running and holds the
    // pipes, but the call returns soon after the command itself exits.
    let t = Instant::now();
    let out = sh("sleep 4 & echo $!");
    assert!(out.status.success());
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t.elapsed()
    );
    let bg: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("pid of the background sleep");
    assert!(pid_exists(bg), "the background process was killed");
}

#[test]
fn local_env_file_is_parsed() {
    let dir = make_temp_dir("s3upfs-smoke-");
    std::fs::write(
        dir.path().join(LOCAL_ENV_FILE),
        "# written by s3upfs --local\n\
         S3UPFS_ENDPOINT=http://127.0.0.1:45678\n\
         export S3UPFS_BUCKET=\"local-bucket\"\n\
         AWS_ACCESS_KEY_ID=ak\n\
         AWS_SECRET_ACCESS_KEY=sk=with=equals\n\
         \n\
         AWS_REGION=us-east-1\n",
    )
    .expect("writing the env file");
    for path in [dir.path().to_path_buf(), dir.path().join(LOCAL_ENV_FILE)] {
        let s = S3Server::local_from_env_file(&path);
        assert_eq!(s.endpoint(), "http://127.0.0.1:45678");
        assert_eq!(s.bucket(), "local-bucket");
        assert_eq!(s.access_key(), "ak");
        assert_eq!(s.secret_key(), "sk=with=equals");
        assert_eq!(s.region(), "us-east-1");
        assert!(!s.is_garage());
        assert_eq!(s.pid(), None);
        assert_eq!(s.admin_endpoint(), None);
    }
}

#[test]
fn garage_put_get_list_multipart_restart_and_cleanup() {
    let t0 = Instant::now();
    let mut server = S3Server::garage();
    eprintln!("garage up in {:?} at {}", t0.elapsed(), server.endpoint());
    assert_eq!(server.region(), "garage");
    assert!(server.access_key().starts_with("GK") && server.access_key().len() == 26);
    assert_eq!(server.secret_key().len(), 64);
    let pid = server.pid().expect("garage runs");
    let dir = server.dir().expect("garage has a dir");
    let s3 = server.client();

    // Objects, metadata, ranges, deletes.
    assert_eq!(s3.get("missing"), None);
    assert_eq!(s3.head("missing"), None);
    let data = random_bytes(300_000, 1);
    s3.put("dir/a.bin", data.clone());
    s3.put_with_metadata(
        "dir/b.txt",
        b"hello".to_vec(),
        &[("mode", "0644"), ("uid", "0")],
    );
    s3.put("top", Vec::new());
    assert_eq!(s3.get("dir/a.bin").as_deref(), Some(&data[..]));
    assert_eq!(
        s3.get_range("dir/a.bin", 1000, 1010),
        data[1000..1010].to_vec()
    );
    let h = s3.head("dir/b.txt").expect("head dir/b.txt");
    assert_eq!(h.size, 5);
    assert!(h.etag.starts_with('"'), "etag {:?}", h.etag);
    assert_eq!(h.metadata.get("mode").map(String::as_str), Some("0644"));
    assert_eq!(h.metadata.get("uid").map(String::as_str), Some("0"));
    eprintln!("head dir/b.txt: {h:?}");
    assert_eq!(s3.head("top").map(|h| h.size), Some(0));
    assert_eq!(s3.list("dir/"), ["dir/a.bin", "dir/b.txt"]);
    assert_eq!(s3.list(""), ["dir/a.bin", "dir/b.txt", "top"]);
    s3.delete("top");
    s3.delete("top"); // deleting a missing key succeeds
    assert_eq!(s3.list(""), ["dir/a.bin", "dir/b.txt"]);

    // Listing paginates past 1000 keys.
    let t = Instant::now();
    s3.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..1005 {
            let c = s3.sdk().clone();
            let bucket = server.bucket();
            set.spawn(async move {
                c.put_object()
                    .bucket(bucket)
                    .key(format!("many/{i:04}"))
                    .body(Vec::from(format!("{i}")).into())
                    .send()
                    .await
                    .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)))
            });
            while set.len() >= 16 {
                set.join_next()
                    .await
                    .expect("a task")
                    .expect("join")
                    .expect("put");
            }
        }
        while let Some(r) = set.join_next().await {
            r.expect("join").expect("put");
        }
    });
    let many = s3.list("many/");
    eprintln!("1005 puts + list in {:?}", t.elapsed());
    assert_eq!(many.len(), 1005);
    assert_eq!(many[1004], "many/1004");

    // Multipart: Garage accepts small parts (it does not enforce 5 MiB).
    let key = "mp/object";
    let id = s3.create_multipart(key);
    let p1 = random_bytes(100_000, 2);
    let p2 = random_bytes(50_000, 3);
    let e1 = s3.upload_part(key, &id, 1, p1.clone());
    let e2 = s3.upload_part(key, &id, 2, p2.clone());
    let other = s3.create_multipart("mp/aborted");
    let uploads = s3.list_multipart_uploads();
    assert!(
        uploads.contains(&(key.to_string(), id.clone())),
        "{uploads:?}"
    );
    assert!(
        uploads.contains(&("mp/aborted".to_string(), other.clone())),
        "{uploads:?}"
    );
    assert_eq!(s3.list_parts(key, &id), [(1, 100_000), (2, 50_000)]);
    let etag = s3.complete_multipart(key, &id, &[(1, e1), (2, e2)]);
    assert!(etag.ends_with("-2\""), "multipart etag {etag}");
    assert_eq!(s3.get(key), Some([p1, p2].concat()));
    assert_eq!(s3.head(key).map(|h| h.size), Some(150_000));
    s3.abort("mp/aborted", &other);
    assert_eq!(s3.list_multipart_uploads(), Vec::<(String, String)>::new());
    assert_eq!(s3.list("mp/"), ["mp/object"]);
    // Leftover uploads can be cleared in one go.
    let _ = s3.create_multipart("mp/left");
    assert_eq!(s3.abort_all_multipart(), 1);

    // Garage's metrics count requests per S3 endpoint.
    let counts = server.s3_request_counts();
    eprintln!("s3 request counts: {counts:?}");
    assert!(
        counts.get("PutObject").copied().unwrap_or(0) >= 1008,
        "{counts:?}"
    );
    assert_eq!(
        counts.get("CompleteMultipartUpload").copied(),
        Some(1),
        "{counts:?}"
    );

    // Stop: the process is gone and the port refuses; start: same data, same endpoint.
    let endpoint = server.endpoint();
    server.stop();
    assert!(
        !pid_exists(pid),
        "garage pid {pid} still exists after stop()"
    );
    assert!(!server.is_running());
    assert!(!server.is_reachable());
    let t = Instant::now();
    server.start();
    eprintln!("garage restarted in {:?}", t.elapsed());
    assert_eq!(server.endpoint(), endpoint);
    let pid2 = server.pid().expect("restarted garage runs");
    assert_ne!(pid, pid2);
    assert_eq!(
        s3.get("dir/a.bin").as_deref(),
        Some(&data[..]),
        "data survives a restart"
    );
    assert_eq!(s3.list("many/").len(), 1005);
    assert_eq!(
        s3.head("dir/b.txt")
            .and_then(|h| h.metadata.get("mode").cloned()),
        Some("0644".to_string())
    );
    s3.put("after-restart", b"x".to_vec());
    // stop()/start() twice in a row are no-ops the second time.
    server.start();
    assert_eq!(server.pid(), Some(pid2));

    // Frozen (SIGSTOP): connections hang instead of being refused.
    server.freeze();
    let t = Instant::now();
    assert!(!server.is_reachable());
    eprintln!("probe of a frozen garage failed after {:?}", t.elapsed());
    server.thaw();
    assert!(server.is_reachable());

    assert!(server.log().contains("garage"), "log: {}", server.log());
    drop(s3);
    drop(server);
    assert!(
        !pid_exists(pid2),
        "garage pid {pid2} still exists after drop"
    );
    if std::env::var_os("S3UPFS_KEEP_TEST_DIRS").is_none() {
        assert!(!dir.exists(), "{} not removed", dir.display());
    }
}

#[test]
fn garage_is_killed_when_a_test_panics() {
    let pid_and_dir = std::sync::Mutex::new(None);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let server = S3Server::garage();
        *pid_and_dir.lock().expect("lock") = Some((server.pid().expect("pid"), server.dir()));
        panic!("deliberate panic with a running Garage");
    }));
    assert!(r.is_err());
    let (pid, dir) = pid_and_dir
        .lock()
        .expect("lock")
        .take()
        .expect("garage started");
    assert!(!pid_exists(pid), "garage pid {pid} survived the panic");
    if std::env::var_os("S3UPFS_KEEP_TEST_DIRS").is_none() {
        assert!(!dir.expect("dir").exists());
    }
}
