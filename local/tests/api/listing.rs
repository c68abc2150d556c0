//! ListObjectsV2 over objects and directory markers: with and without the `/` delimiter, by
//! prefix, and in pages joined by continuation tokens.

use crate::common::{Local, list, strings, tree};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delimited_listing_shows_the_directorys_own_marker_its_files_and_its_subdirectories() {
    let Local { c, .. } = &Local::start();
    tree(c).await;
    assert_eq!(
        list(c, "a/", true, None).await,
        (
            strings(&["a/", "a/top"]),
            strings(&["a/b/", "a/empty/", "a/implicit/"])
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_an_empty_markers_prefix_shows_the_marker_itself() {
    let Local { c, .. } = &Local::start();
    tree(c).await;
    assert_eq!(
        list(c, "a/empty/", true, None).await,
        (strings(&["a/empty/"]), vec![])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delimited_listing_of_the_root_shows_only_the_top_directory() {
    let Local { c, .. } = &Local::start();
    tree(c).await;
    assert_eq!(list(c, "", true, None).await, (vec![], strings(&["a/"])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_ending_inside_a_name_matches_the_subdirectories_that_start_with_it() {
    let Local { c, .. } = &Local::start();
    tree(c).await;
    assert_eq!(
        list(c, "a/e", true, None).await,
        (vec![], strings(&["a/empty/"]))
    );
}

const ALL: [&str; 6] = [
    "a/",
    "a/b/",
    "a/b/file",
    "a/empty/",
    "a/implicit/deep/file",
    "a/top",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_without_delimiter_returns_every_object_and_marker_in_key_order() {
    let Local { c, .. } = &Local::start();
    tree(c).await;
    assert_eq!(list(c, "", false, None).await.0, ALL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_two_joined_by_continuation_tokens_return_the_whole_listing() {
    let Local { c, .. } = &Local::start();
    tree(c).await;
    assert_eq!(list(c, "", false, Some(2)).await.0, ALL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delimited_listing_in_pages_of_one_equals_the_unpaged_listing() {
    let Local { c, .. } = &Local::start();
    tree(c).await;
    assert_eq!(
        list(c, "a/", true, Some(1)).await,
        list(c, "a/", true, None).await
    );
}
