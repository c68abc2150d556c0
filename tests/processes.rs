//! Programs that fork and exec while they write into the mount (build tools, shells,
//! `tar -z`, test harnesses): a child that closes its inherited copy of the descriptor
//! at exec neither hangs nor completes the file early, and the file is whole.

mod common;

use std::time::Duration;

use common::{Mount, S3Server};

const MIB: usize = 1 << 20;

/// The audit's hang: a child's exec closes the close-on-exec descriptor it inherited
/// (FLUSH from the child, in the middle of execve), and the daemon read the child's
/// /proc entries to answer it, which Linux blocks until the exec ends: the child sat in
/// uninterruptible sleep, and the parent's spawn with it.
#[test]
fn children_exec_while_the_parent_writes_without_hanging_and_the_file_is_whole() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let script = r#"
import os, subprocess, threading
m = os.environ['MNT']
fd = os.open(f'{m}/out', os.O_WRONLY | os.O_CREAT | os.O_TRUNC)  # close-on-exec
chunk = bytes(range(256)) * 4096
def write():
    for _ in range(64):
        os.write(fd, chunk)
writer = threading.Thread(target=write)
writer.start()
spawned = 0
while writer.is_alive() or spawned < 20:
    # close_fds=False: the child keeps the descriptor until its exec closes it.
    subprocess.run(['true'], close_fds=False, check=True)
    spawned += 1
writer.join()
os.close(fd)
print(spawned, os.stat(f'{m}/out').st_size)
"#;
    let output = common::output_with_timeout(
        {
            let mut command = std::process::Command::new("python3");
            command.arg("-c").arg(script).env("MNT", mount.path());
            command
        },
        Duration::from_secs(120),
    )
    .expect("python3");
    let (out, timed_out) = output;
    assert!(
        !timed_out,
        "the writer or a child hung:\n{}",
        common::tail(&mount.log(), 30)
    );
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    let size = 64 * MIB;
    assert!(printed.trim().ends_with(&format!(" {size}")), "{printed}");
    let expected: Vec<u8> = (0..=255u8).cycle().take(size).collect();
    assert!(
        server.client().get("out") == Some(expected),
        "the object is every byte written, in order"
    );
    mount.unmount();
}
