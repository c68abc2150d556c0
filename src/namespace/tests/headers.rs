//! What objects carry besides our attributes: other tools' metadata and the
//! Content-Type, kept on every copy we make and chosen from the name for new files.

use super::*;
use crate::s3::ObjectHeaders;

fn content_type(fx: &Fixture, key: &str) -> Option<String> {
    fx.store.object(key).and_then(|o| o.headers.content_type)
}

fn theirs(fx: &Fixture, key: &str, content_type: &str) -> u64 {
    let headers = ObjectHeaders {
        metadata: [
            ("owner-note".to_owned(), "keep me".to_owned()),
            ("mode".to_owned(), "33188".to_owned()),
        ]
        .into(),
        content_type: Some(content_type.to_owned()),
    };
    fx.store.insert_with(key, b"x", headers);
    fx.ns.lookup(ROOT, OsStr::new(key)).expect("lookup").ino
}

#[test]
fn a_chmod_of_another_client_s_object_keeps_its_metadata_and_content_type() {
    let fx = Fixture::new();
    let ino = theirs(&fx, "theirs", "application/x-custom");
    fx.chmod(ino, 0o600).unwrap();
    fx.ns.apply_pending_metadata(Duration::ZERO);
    let object = fx.store.object("theirs").unwrap();
    assert_eq!(object.headers.metadata["mode"], (0o100600).to_string());
    assert_eq!(object.headers.metadata["owner-note"], "keep me");
    assert_eq!(
        object.headers.content_type.as_deref(),
        Some("application/x-custom")
    );
}

#[test]
fn a_rename_keeps_another_client_s_metadata_and_deliberate_content_type() {
    let fx = Fixture::new();
    let ino = theirs(&fx, "data", "application/x-custom");
    fx.chmod(ino, 0o600).unwrap();
    fx.rename("data", "data.txt").unwrap();
    let object = fx.store.object("data.txt").unwrap();
    assert_eq!(object.headers.metadata["owner-note"], "keep me");
    assert_eq!(
        object.headers.content_type.as_deref(),
        Some("application/x-custom")
    );
}

#[test]
fn a_new_file_gets_its_content_type_from_its_name() {
    let fx = Fixture::new();
    fx.put("page.html", b"<p>");
    fx.put("noext", b"?");
    fx.put("big.mp4", &bytes(12 * MIB, 1));
    assert_eq!(content_type(&fx, "page.html").as_deref(), Some("text/html"));
    assert_eq!(
        content_type(&fx, "noext").as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(content_type(&fx, "big.mp4").as_deref(), Some("video/mp4"));
}

#[test]
fn rsync_s_temporary_name_gives_way_to_the_final_name_s_content_type() {
    let fx = Fixture::new();
    let (ino, fh) = fx.create(".page.html.Xa81Zq");
    fx.write(fh, 0, b"<p>").unwrap();
    fx.close(fh).unwrap();
    fx.chmod(ino, 0o644).unwrap();
    fx.rename(".page.html.Xa81Zq", "page.html").unwrap();
    assert_eq!(content_type(&fx, "page.html").as_deref(), Some("text/html"));
    assert_eq!(fx.store.count("CopyObject"), 1);
}

#[test]
fn a_chmod_of_our_own_file_keeps_its_content_type() {
    let fx = Fixture::new();
    let ino = fx.put("notes.txt", b"hi");
    fx.chmod(ino, 0o600).unwrap();
    fx.ns.apply_pending_metadata(Duration::ZERO);
    assert_eq!(
        content_type(&fx, "notes.txt").as_deref(),
        Some("text/plain")
    );
}

#[test]
fn a_plain_mv_to_another_extension_retypes_the_object_in_its_one_copy() {
    let fx = Fixture::new();
    fx.put("report.txt", b"hi");
    fx.rename("report.txt", "report.html").unwrap();
    assert_eq!(
        content_type(&fx, "report.html").as_deref(),
        Some("text/html")
    );
    assert_eq!(fx.store.count("CopyObject"), 1);
}

#[test]
fn a_write_renamed_before_its_upload_started_is_typed_by_its_new_name() {
    let fx = Fixture::new();
    let (_, fh) = fx.create("draft.tmp");
    fx.write(fh, 0, b"{}").unwrap();
    fx.rename("draft.tmp", "data.json").unwrap();
    fx.close(fh).unwrap();
    assert_eq!(
        content_type(&fx, "data.json").as_deref(),
        Some("application/json")
    );
}
