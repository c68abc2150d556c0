//! The write path through a real mount on Garage: objects equal what was written,
//! parts stream out while writing, every writer idiom completes on close, failures
//! surface at close and leave nothing behind, memory stays bounded.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use common::{Mount, S3Server, random_bytes, sh};

const MIB: usize = 1 << 20;

fn part_count(etag: &str) -> usize {
    etag.trim_matches('"')
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

#[test]
fn cp_of_files_around_part_boundaries_gives_identical_objects_with_scheduled_parts() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let source_dir = tempfile::tempdir().expect("tempdir");
    // (size, parts): one PutObject up to the first part size, 8 MiB parts after it.
    let cases = [
        (0, 1),
        (1, 1),
        (5 * MIB - 1, 1),
        (8 * MIB - 1, 1),
        (8 * MIB, 1),
        (8 * MIB + 1, 2),
        (100 * MIB, 13),
    ];
    let client = server.client();
    for (index, (size, parts)) in cases.iter().enumerate() {
        let name = format!("file-{size}");
        let data = random_bytes(*size, index as u64);
        let source = source_dir.path().join(&name);
        std::fs::write(&source, &data).expect("write source");
        let output = sh(&format!(
            "cp {} {}",
            source.display(),
            mount.join(&name).display()
        ));
        assert!(
            output.status.success(),
            "cp of {size} bytes failed: {output:?}"
        );
        let head = client
            .head(&name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(head.size, *size as u64);
        let etag = head.etag.clone();
        assert_eq!(part_count(&etag), *parts, "{name}: etag {etag}");
        if *parts == 1 {
            assert!(
                !etag.contains('-'),
                "{name} should be a single PutObject: {etag}"
            );
        }
        assert!(
            client.get(&name).as_deref() == Some(&data[..]),
            "{name}: bytes differ"
        );
    }
    assert!(client.list_multipart_uploads().is_empty());
}

#[test]
fn cp_of_one_gib_is_byte_identical() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let source_dir = tempfile::tempdir().expect("tempdir");
    let data = random_bytes(1024 * MIB, 7);
    let source = source_dir.path().join("big");
    std::fs::write(&source, &data).expect("write source");
    let output = sh(&format!(
        "cp {} {}",
        source.display(),
        mount.join("big").display()
    ));
    assert!(output.status.success(), "cp failed: {output:?}");
    let client = server.client();
    let head = client.head("big").expect("object");
    assert_eq!(part_count(&head.etag), 128);
    assert!(
        client.get("big").as_deref() == Some(&data[..]),
        "bytes differ"
    );
    // Read back through the mount too (ranged GETs with readahead).
    let output = sh(&format!(
        "cmp {} {}",
        source.display(),
        mount.join("big").display()
    ));
    assert!(output.status.success(), "cmp through the mount: {output:?}");
}

#[test]
fn parts_are_uploaded_while_the_writer_is_still_writing() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let data = random_bytes(48 * MIB, 3);
    let mut file = std::fs::File::create(mount.join("stream")).expect("create");
    file.write_all(&data).expect("write 6 parts");
    let client = server.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    let parts = loop {
        let uploads = client.list_multipart_uploads();
        if let Some((key, id)) = uploads.first() {
            assert_eq!(key, "stream");
            let parts = client.list_parts(key, id);
            if parts.len() >= 4 || Instant::now() > deadline {
                break parts;
            }
        } else {
            assert!(
                Instant::now() < deadline,
                "no multipart upload while writing"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        parts.len() >= 4,
        "only {} parts uploaded before close",
        parts.len()
    );
    for (number, size) in &parts {
        assert_eq!(*size, 8 * MIB as u64, "part {number} has size {size}");
    }
    assert!(
        client.get("stream").is_none(),
        "no object may be visible before close"
    );
    drop(file);
    assert!(client.get("stream").as_deref() == Some(&data[..]));
    assert!(client.list_multipart_uploads().is_empty());
}

#[test]
fn dd_redirection_tee_python_and_forked_writers_all_complete_on_close() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let source_dir = tempfile::tempdir().expect("tempdir");
    let data = random_bytes(20 * MIB + 12345, 11);
    let source = source_dir.path().join("src");
    std::fs::write(&source, &data).expect("write source");
    let src = source.display();
    let m = mount.path().display();
    let commands = [
        ("dd", format!("dd if={src} of={m}/dd bs=1M status=none")),
        (
            "dd-fsync",
            format!("dd if={src} of={m}/dd-fsync bs=1M conv=fsync status=none"),
        ),
        ("redirect", format!("cat {src} > {m}/redirect")),
        (
            "subshell",
            format!("(head -c 1000000 {src}; tail -c +1000001 {src}) > {m}/subshell"),
        ),
        ("tee", format!("cat {src} | tee {m}/tee > /dev/null")),
        (
            "python",
            format!(
                "python3 -c 'import shutil; shutil.copyfileobj(open(\"{src}\",\"rb\"), open(\"{m}/python\",\"wb\"))'"
            ),
        ),
        (
            "forked",
            format!(
                "python3 -c '\nimport os\nfd = os.open(\"{m}/forked\", os.O_WRONLY|os.O_CREAT|os.O_TRUNC)\ndata = open(\"{src}\",\"rb\").read()\npid = os.fork()\nif pid == 0:\n    os.write(fd, data)\n    os._exit(0)\nos.waitpid(pid, 0)\nos.close(fd)\n'"
            ),
        ),
    ];
    let client = server.client();
    for (name, command) in &commands {
        let output = sh(command);
        assert!(
            output.status.success(),
            "{name}: {command} failed: {output:?}"
        );
        let object = client.get(name);
        assert!(
            object.as_deref() == Some(&data[..]),
            "{name}: object has {:?} bytes, expected {}",
            object.map(|o| o.len()),
            data.len()
        );
    }
    assert!(client.list_multipart_uploads().is_empty());
}

#[test]
fn an_unreachable_server_fails_close_and_leaves_no_object_or_upload() {
    let mut server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let data = random_bytes(24 * MIB, 5);
    let mut file = std::fs::File::create(mount.join("doomed")).expect("create");
    file.write_all(&data).expect("first writes");
    // Stop the server only once the multipart upload exists. Killed while the
    // CreateMultipartUpload was in flight, it may create the upload and never answer:
    // then no id is known to abort, and only the mount-time sweep, `s3upfs cleanup` or a
    // lifecycle rule remove it (a known gap, see the README).
    let client = server.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.list_multipart_uploads().is_empty() {
        assert!(Instant::now() < deadline, "no multipart upload created");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.stop();
    let more = file.write_all(&data);
    let closed = common::close_checked(file);
    assert!(
        more.is_err() || closed.is_err(),
        "writing to a stopped server must fail at the latest on close"
    );
    server.start();
    assert!(
        client.get("doomed").is_none(),
        "a failed upload must not appear"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.list_multipart_uploads().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the failed multipart upload was not aborted once the server was back"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(mount.log().contains("doomed"), "the log must name the file");
}

#[test]
fn unlink_while_writing_leaves_no_object_and_no_upload() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let data = random_bytes(30 * MIB, 9);
    let path = mount.join("gone");
    let mut file = std::fs::File::create(&path).expect("create");
    file.write_all(&data).expect("write");
    std::fs::remove_file(&path).expect("unlink while open");
    file.write_all(&data[..MIB])
        .expect("writes after unlink are accepted");
    common::close_checked(file).expect("close after unlink succeeds");
    let client = server.client();
    assert!(client.get("gone").is_none());
    assert!(client.list_multipart_uploads().is_empty());
    assert!(!path.exists());
}

#[test]
fn a_header_patched_after_writing_lands_in_the_object_but_uploaded_parts_refuse_writes() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let mut data = random_bytes(20 * MIB, 13);
    let mut file = std::fs::File::create(mount.join("muxed")).expect("create");
    file.write_all(&data).expect("write");
    let header = random_bytes(4096, 14);
    file.seek(SeekFrom::Start(0)).expect("seek");
    file.write_all(&header).expect("patch the header");
    data[..4096].copy_from_slice(&header);
    common::close_checked(file).expect("close");
    assert!(server.client().get("muxed").as_deref() == Some(&data[..]));

    let mut file = std::fs::File::create(mount.join("middle")).expect("create");
    file.write_all(&random_bytes(40 * MIB, 15)).expect("write");
    // Part 2 (8..16 MiB) is handed to the pool once part 3 starts filling.
    file.seek(SeekFrom::Start(10 * MIB as u64)).expect("seek");
    let error = file
        .write_all(b"late")
        .expect_err("write into an uploaded part");
    assert_eq!(error.raw_os_error(), Some(libc::EINVAL));
    drop(file);
}

#[test]
fn thirty_two_writers_finish_within_a_32_mib_budget() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &["--max-memory", "32MiB"]);
    let writers: Vec<_> = (0..32u64)
        .map(|index| {
            let path = mount.join(format!("w{index}"));
            std::thread::spawn(move || {
                let data = random_bytes(40 * MIB, 100 + index);
                let mut file = std::fs::File::create(&path).expect("create");
                for chunk in data.chunks(MIB) {
                    file.write_all(chunk).expect("write");
                }
                common::close_checked(file).expect("close");
                data
            })
        })
        .collect();
    let client = server.client();
    for (index, writer) in writers.into_iter().enumerate() {
        let data = writer.join().expect("writer thread");
        assert!(
            client.get(&format!("w{index}")).as_deref() == Some(&data[..]),
            "w{index} differs"
        );
    }
    assert!(client.list_multipart_uploads().is_empty());
}
