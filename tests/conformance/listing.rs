//! ListObjectsV2 as the mount lists directories: delimiter `/`, small pages, continuation
//! tokens.

use crate::Target;

/// One page: its keys and common prefixes.
type Page = (Vec<String>, Vec<String>);

/// Every page of a listing of `prefix` with `max_keys` per page, each checked to hold at most
/// `max_keys` entries and to carry a continuation token when it is not the last.
async fn pages(t: &Target, prefix: &str, delimited: bool, max_keys: i32) -> Vec<Page> {
    let (mut pages, mut token) = (Vec::new(), None);
    loop {
        let out =
            t.c.list_objects_v2()
                .bucket(&t.bucket)
                .prefix(prefix)
                .set_delimiter(delimited.then(|| "/".to_owned()))
                .max_keys(max_keys)
                .set_continuation_token(token)
                .send()
                .await
                .unwrap();
        let page: Page = (
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect(),
            out.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned))
                .collect(),
        );
        let entries = page.0.len() + page.1.len();
        assert!(
            entries <= max_keys as usize,
            "page {}: {page:?}",
            pages.len()
        );
        pages.push(page);
        if !out.is_truncated().unwrap_or(false) {
            return pages;
        }
        token = out.next_continuation_token().map(str::to_owned);
        assert!(
            token.is_some(),
            "a truncated page without a continuation token"
        );
        assert!(pages.len() < 100, "the listing does not end");
    }
}

/// Every key under `prefix`, in the server's order.
pub async fn keys(t: &Target, prefix: &str) -> Vec<String> {
    let pages = pages(t, prefix, false, 1000).await;
    pages.into_iter().flat_map(|p| p.0).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

pub async fn a_delimited_listing_names_each_common_prefix_once_across_small_pages(t: Target) {
    for key in [
        "dir/a/1",
        "dir/a/2",
        "dir/a/3",
        "dir/b/1",
        "dir/c",
        "dir/d/x/y",
        "dir/e",
        "dir/f/1",
        "dir/f/2",
        "other/1",
    ] {
        t.put(key, b"x").await;
    }
    let pages = pages(&t, "dir/", true, 2).await;
    assert!(pages.len() >= 3, "max-keys 2 gave {} pages", pages.len());
    let keys: Vec<String> = pages.iter().flat_map(|p| p.0.clone()).collect();
    let prefixes: Vec<String> = pages.iter().flat_map(|p| p.1.clone()).collect();
    assert_eq!(keys, strings(&["dir/c", "dir/e"]));
    assert_eq!(prefixes, strings(&["dir/a/", "dir/b/", "dir/d/", "dir/f/"]));
}

pub async fn a_flat_listing_pages_through_every_key_in_order_with_continuation_tokens(t: Target) {
    let expected: Vec<String> = (0..7).map(|i| format!("flat/{i}/file")).collect();
    for key in &expected {
        t.put(key, b"x").await;
    }
    t.put("flatter", b"not under the prefix").await;
    let pages = pages(&t, "flat/", false, 3).await;
    assert_eq!(pages.len(), 3, "{pages:?}");
    let keys: Vec<String> = pages.into_iter().flat_map(|p| p.0).collect();
    assert_eq!(keys, expected);
}
