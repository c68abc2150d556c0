//! Directory markers (`a/b/`): read back as empty objects with their metadata, copied and
//! chmod'ed, deleted while the keys under them stay, refused over an object, and kept across a
//! restart. Also DeleteObjects and an empty ListMultipartUploads, which the mount's directory
//! operations use beside them.

use aws_sdk_s3::types::{Delete, MetadataDirective, ObjectIdentifier};

use crate::common::{
    B, Local, delete, get, head, head_status, list, meta, put, put_err, put_marker, status,
    strings, tree,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_get_of_a_marker_return_an_empty_object_with_its_type_and_metadata() {
    let Local { c, .. } = &Local::start();
    tree(c).await;
    let head = head(c, "a/empty/").await;
    assert_eq!(head.content_length(), Some(0));
    assert_eq!(head.content_type(), Some("application/x-directory"));
    assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "40755")]));
    assert_eq!(get(c, "a/empty/").await, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_only_holds_keys_is_neither_a_marker_nor_an_object() {
    let Local { c, .. } = &Local::start();
    tree(c).await;
    for key in ["a/implicit/", "a/implicit"] {
        assert_eq!(head_status(c, key).await, 404, "{key}");
    }
}

/// chmod of a directory, as the mount sends it.
async fn chmod_empty(c: &aws_sdk_s3::Client) {
    c.copy_object()
        .bucket(B)
        .key("a/empty/")
        .copy_source("s3upfs/a/empty/")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/x-directory")
        .metadata("mode", "40700")
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_copy_of_a_marker_with_replace_changes_its_metadata() {
    let Local { c, .. } = &Local::start();
    tree(c).await;
    chmod_empty(c).await;
    assert_eq!(
        head(c, "a/empty/").await.metadata().unwrap(),
        &meta(&[("mode", "40700")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_copied_to_another_marker_key_carries_its_metadata() {
    let Local { c, .. } = &Local::start();
    tree(c).await;
    chmod_empty(c).await;
    c.copy_object()
        .bucket(B)
        .key("a/moved/")
        .copy_source("s3upfs/a/empty/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head(c, "a/moved/").await.metadata().unwrap(),
        &meta(&[("mode", "40700")])
    );
    delete(c, "a/moved/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_marker_is_404_and_its_directory_is_still_listed_while_keys_remain_under_it() {
    let Local { c, .. } = &Local::start();
    tree(c).await;
    delete(c, "a/empty/").await;
    delete(c, "a/b/").await;
    assert_eq!(head_status(c, "a/empty/").await, 404);
    assert_eq!(
        list(c, "a/", true, None).await,
        (strings(&["a/", "a/top"]), strings(&["a/b/", "a/implicit/"]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_emptied_by_deletes_is_no_longer_listed_and_a_file_can_take_its_name() {
    let Local { c, .. } = &Local::start();
    tree(c).await;
    delete(c, "a/empty/").await;
    delete(c, "a/b/").await;
    delete(c, "a/implicit/deep/file").await;
    assert_eq!(list(c, "a/", true, None).await.1, strings(&["a/b/"]));
    put(c, "a/implicit", b"now a file").await;
    assert_eq!(get(c, "a/implicit").await, b"now a file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_over_an_object_is_refused_with_400() {
    let Local { c, .. } = &Local::start();
    put(c, "a/implicit", b"now a file").await;
    let e = put_err(c, "a/implicit/", b"").await;
    assert_eq!(status(&e), 400, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_objects_deletes_every_key_it_names() {
    let Local { c, .. } = &Local::start();
    put(c, "a/x1", b"1").await;
    put(c, "a/x2", b"2").await;
    let ids = ["a/x1", "a/x2"].map(|k| ObjectIdentifier::builder().key(k).build().unwrap());
    let out = c
        .delete_objects()
        .bucket(B)
        .delete(
            Delete::builder()
                .set_objects(Some(ids.to_vec()))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(out.deleted().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_multipart_uploads_with_nothing_pending_is_empty() {
    let Local { c, .. } = &Local::start();
    tree(c).await;
    let uploads = c.list_multipart_uploads().bucket(B).send().await.unwrap();
    assert!(uploads.uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_their_metadata_and_objects_survive_a_restart() {
    let local = Local::start();
    tree(&local.c).await;
    put_marker(&local.c, "kept/empty/", "40711").await;
    let Local { c, .. } = &local.restart();
    assert_eq!(
        list(c, "kept/", true, None).await,
        (vec![], strings(&["kept/empty/"]))
    );
    assert_eq!(
        list(c, "kept/empty/", true, None).await,
        (strings(&["kept/empty/"]), vec![])
    );
    assert_eq!(
        head(c, "kept/empty/").await.metadata().unwrap(),
        &meta(&[("mode", "40711")])
    );
    assert_eq!(get(c, "a/top").await, b"top");
}
