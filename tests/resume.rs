//! Resume on a real mount over Garage: a copy whose daemon is killed at about 70% is
//! continued by the same copy after a remount, sending only what S3 lacks.

mod common;

use std::time::{Duration, Instant};

use common::fault_proxy::{Fault, FaultProxy, Op, When};
use common::{Mount, S3Server, make_temp_dir, run_cli, via_proxy, write_random_file};

const MIB: u64 = 1 << 20;

#[test]
fn a_copy_killed_at_70_percent_resumes_after_a_remount_sending_at_most_40_percent_again() {
    let server = S3Server::garage();
    let client = server.client();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let state = make_temp_dir("s3upfs-state-");
    let state_dir = state.path().to_str().expect("utf-8").to_owned();
    let source = make_temp_dir("s3upfs-resume-src-");
    let size = 512 * MIB;
    let file = source.path().join("big.bin");
    write_random_file(&file, size, 42);
    let parts = size / (8 * MIB);

    proxy.set_fault(
        Op::UploadPart,
        When::Always,
        Fault::Delay(Duration::from_millis(300)),
    );
    let mount = Mount::new(&through, &["--state-dir", &state_dir]);
    let mut cp = std::process::Command::new("cp")
        .arg(&file)
        .arg(mount.join("big.bin"))
        .spawn()
        .expect("cp");
    let deadline = Instant::now() + Duration::from_secs(600);
    while proxy.successes(Op::UploadPart) < parts * 7 / 10 {
        assert!(Instant::now() < deadline, "the copy did not get to 70%");
        std::thread::sleep(Duration::from_millis(50));
    }
    mount.kill(libc::SIGKILL);
    let _ = cp.wait();
    drop(mount);
    assert_eq!(
        client.list_multipart_uploads().len(),
        1,
        "left for the resume"
    );

    proxy.clear();
    proxy.reset_counters();
    let mount = Mount::new(&through, &["--state-dir", &state_dir]);
    let (status, stdout, stderr) = run_cli(
        &["status", mount.path().to_str().expect("utf-8"), "--json"],
        &[],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("\"parked\"") && stdout.contains("big.bin"),
        "{stdout}"
    );
    mount.sh_ok(&format!("cp '{}' \"$MNT/big.bin\"", file.display()));
    let resent: u64 = proxy
        .records_of(Op::UploadPart)
        .iter()
        .map(|r| r.body_len)
        .sum();
    assert!(
        resent * 10 <= size * 4,
        "the second copy sent {} MiB of {} MiB\n{}",
        resent / MIB,
        size / MIB,
        mount.log()
    );
    assert_eq!(
        proxy.count(Op::CreateMultipartUpload),
        0,
        "the parked upload was used"
    );
    let stored = client.get("big.bin").expect("the object");
    assert!(
        stored == std::fs::read(&file).expect("source"),
        "byte-identical"
    );
    assert!(client.list_multipart_uploads().is_empty());
    mount.unmount();
}
