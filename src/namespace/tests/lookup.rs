//! Reading our own writes: a listing whose answer was taken before one of our changes
//! landed must not undo it (rsync lost files under load this way: the new directory
//! or the just-closed temporary file vanished from the table, and mkstemp or the
//! rename got ENOENT).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;
use crate::s3::memory::Phase;

/// Holds every ListObjectsV2 answer (taken, not yet delivered) until released.
struct SlowListing {
    taken: Arc<AtomicUsize>,
    open: Arc<AtomicBool>,
}

impl SlowListing {
    fn on(fx: &Fixture) -> Self {
        let taken = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicBool::new(false));
        let (seen, gate) = (Arc::clone(&taken), Arc::clone(&open));
        fx.store.set_hook(move |phase, op, _| {
            if phase == Phase::After && op == "ListObjectsV2" {
                seen.fetch_add(1, Ordering::SeqCst);
                while !gate.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            None
        });
        Self { taken, open }
    }

    /// Starts listing the root on another thread; returns once the answer is taken.
    fn list_root(
        &self,
        fx: &Fixture,
    ) -> std::thread::JoinHandle<FsResult<Vec<super::super::DirEntry>>> {
        let ns = Arc::clone(&fx.ns);
        let lister = std::thread::spawn(move || ns.list_directory(ROOT));
        eventually("the listing's answer is taken", || {
            self.taken.load(Ordering::SeqCst) == 1
        });
        lister
    }

    fn deliver(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

fn short_ttl() -> Options {
    Options {
        attr_ttl: Duration::from_millis(50),
        ..Options::default()
    }
}

#[test]
fn a_listing_taken_before_a_new_directory_landed_does_not_hide_it() {
    let fx = Fixture::with(short_ttl());
    fx.ns
        .mkdir(ROOT, OsStr::new("sub"), (0o755, 0), 0, 0)
        .unwrap();
    let slow = SlowListing::on(&fx);
    let lister = slow.list_root(&fx);
    fx.ns.apply_pending_metadata(Duration::ZERO);
    assert!(fx.store.object("sub/").is_some(), "the marker landed");
    std::thread::sleep(Duration::from_millis(100));
    slow.deliver();
    lister.join().unwrap().unwrap();
    let found = fx.ns.lookup(ROOT, OsStr::new("sub"));
    assert!(
        found.is_ok(),
        "our new directory vanished: {:?}",
        found.err()
    );
}

#[test]
fn a_listing_taken_before_a_file_was_closed_does_not_hide_it() {
    let fx = Fixture::with(short_ttl());
    let (_, fh) = fx.create(".data.Xa81Zq");
    fx.write(fh, 0, b"x").unwrap();
    let slow = SlowListing::on(&fx);
    let lister = slow.list_root(&fx);
    fx.close(fh).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    slow.deliver();
    lister.join().unwrap().unwrap();
    fx.rename(".data.Xa81Zq", "data")
        .expect("rsync's rename of its temporary file");
}
