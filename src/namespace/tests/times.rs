//! The three times as POSIX keeps them: chmod, chown and rename change ctime, not
//! mtime; `touch -a` sets atime; all three survive a remount.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

#[test]
fn a_chmod_changes_ctime_not_mtime_and_the_object_keeps_both() {
    let fx = Fixture::new();
    let ino = fx.put("f", b"x");
    let before = fx.ns.getattr(ino).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    fx.chmod(ino, 0o600).unwrap();
    let after = fx.ns.getattr(ino).unwrap();
    assert_eq!(after.mtime, before.mtime);
    assert!(
        after.ctime > before.ctime,
        "{:?} !> {:?}",
        after.ctime,
        before.ctime
    );
    fx.ns.apply_pending_metadata(Duration::ZERO);
    let again = Fixture::on(Arc::clone(&fx.store), Options::default());
    let remounted = again.ns.lookup(ROOT, OsStr::new("f")).unwrap();
    assert_eq!(remounted.ctime, after.ctime);
    assert_eq!(remounted.mtime, before.mtime);
}

#[test]
fn touch_a_sets_atime_and_it_survives_a_remount() {
    let fx = Fixture::new();
    let ino = fx.put("f", b"x");
    let atime = UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789);
    let changes = AttributeChanges {
        atime: Some(atime),
        ..AttributeChanges::default()
    };
    assert_eq!(fx.ns.setattr(ino, changes).unwrap().atime, atime);
    fx.ns.sync_namespace_changes();
    let again = Fixture::on(Arc::clone(&fx.store), Options::default());
    assert_eq!(again.ns.lookup(ROOT, OsStr::new("f")).unwrap().atime, atime);
}

#[test]
fn a_rename_changes_ctime_in_its_one_copy() {
    let fx = Fixture::new();
    let ino = fx.put("a", b"x");
    let before = fx.ns.getattr(ino).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    fx.rename("a", "b").unwrap();
    let after = fx.ns.getattr(ino).unwrap();
    assert!(after.ctime > before.ctime);
    assert_eq!(fx.store.count("CopyObject"), 1);
    let stored = fx.store.object("b").unwrap().headers.metadata;
    let ctime = crate::namespace::metadata::parse_seconds(&stored["ctime"]).unwrap();
    assert!(ctime > before.ctime && ctime <= SystemTime::now());
}

#[test]
fn making_and_removing_names_moves_the_directorys_mtime_and_ctime_past_a_refresh() {
    let fx = Fixture::with(Options {
        attr_ttl: Duration::from_millis(30),
        ..Options::default()
    });
    let dir = fx
        .ns
        .mkdir(ROOT, OsStr::new("d"), (0o755, 0), me(), me())
        .unwrap();
    fx.ns.sync_namespace_changes();
    let mut last = fx.ns.getattr(dir.ino).unwrap();
    let steps: [(&str, &dyn Fn() -> FsResult<()>); 4] = [
        ("create", &|| {
            let (_, fh) = fx
                .ns
                .create(dir.ino, OsStr::new("f"), (0o644, 0), me(), me(), me())?;
            fx.close(fh)
        }),
        ("rename within", &|| {
            fx.ns
                .rename(dir.ino, OsStr::new("f"), dir.ino, OsStr::new("g"), false)
        }),
        ("unlink", &|| fx.ns.unlink(dir.ino, OsStr::new("g"))),
        ("mkdir", &|| {
            fx.ns
                .mkdir(dir.ino, OsStr::new("e"), (0o755, 0), me(), me())
                .map(|_| ())
        }),
    ];
    for (step, run) in steps {
        std::thread::sleep(Duration::from_millis(40));
        run().unwrap();
        // Past the attribute TTL: the marker is asked again and must not undo it.
        std::thread::sleep(Duration::from_millis(40));
        let now = fx.ns.lookup(ROOT, OsStr::new("d")).unwrap();
        assert!(now.mtime > last.mtime, "{step}: mtime did not move");
        assert!(now.ctime > last.ctime, "{step}: ctime did not move");
        last = now;
    }
}
