//! ListObjects v1 and v2, over one implementation: s3s-fs lists neither markers nor anything
//! but `/`-free prefixes, so listings are read from the directory tree here. [`Store::list`]
//! finds every key under a prefix, grouped by any delimiter (only the directory the prefix names
//! is read when the delimiter is `/`); [`LocalFs::list`] pages and encodes it; the two operations
//! differ only in how they name the page's start and end.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::dto;
use s3s::{S3Request, S3Response, S3Result};

use crate::args::{check_key, page_limit};
use crate::error::io_err;
use crate::markers::EMPTY_MD5;
use crate::service::LocalFs;
use crate::store::{Store, dir_items, is_not_found};

/// An object or marker found on disk.
pub(crate) struct Listed {
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
    pub marker: bool,
}

enum Item {
    Object(Listed),
    Prefix(String),
}

impl Item {
    fn key(&self) -> &str {
        match self {
            Item::Object(o) => &o.key,
            Item::Prefix(p) => p,
        }
    }
}

/// One page of a listing, keys and prefixes encoded as the request asked.
struct Page {
    objects: Vec<dto::Object>,
    prefixes: Vec<dto::CommonPrefix>,
    /// The last key or prefix of a truncated page (not encoded): where the next page starts.
    next: Option<String>,
    /// max-keys as answered.
    max_keys: i32,
}

/// The entry of the object file `entry` (None if it was deleted while listing).
fn file_entry(key: String, entry: &fs::DirEntry) -> io::Result<Option<Listed>> {
    match entry.metadata() {
        Ok(meta) => Ok(Some(Listed {
            key,
            size: meta.len(),
            modified: meta.modified()?,
            marker: false,
        })),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Everything but unreserved characters and `/` is percent-encoded (`encoding-type=url`).
const URL_ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, URL_ENCODED).to_string()
}

impl Store {
    /// Every object and marker under the directory `key_dir`, recursively.
    fn walk(
        &self,
        bucket: &str,
        key_dir: String,
        path: PathBuf,
        out: &mut Vec<Listed>,
    ) -> io::Result<()> {
        let mut stack = vec![(key_dir, path)];
        while let Some((key_dir, dir)) = stack.pop() {
            out.extend(self.marker_entry(bucket, &key_dir));
            let Some(items) = dir_items(&dir)? else {
                continue;
            };
            for item in items {
                let item = item?;
                if item.is_dir {
                    stack.push((format!("{key_dir}{}/", item.name), item.entry.path()));
                } else {
                    out.extend(file_entry(format!("{key_dir}{}", item.name), &item.entry)?);
                }
            }
        }
        Ok(())
    }

    /// Every key (object or marker) starting with `prefix`, grouped by `delimiter`, sorted.
    fn list(&self, bucket: &str, prefix: &str, delimiter: Option<&str>) -> S3Result<Vec<Item>> {
        self.require_bucket(bucket)?;
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let (dir_part, name_prefix) = match prefix.rfind('/') {
            Some(i) => prefix.split_at(i + 1),
            None => ("", prefix),
        };
        if !dir_part.is_empty() && check_key(dir_part).is_err() {
            return Ok(Vec::new()); // no stored key can start like this
        }
        let read = |e| io_err("cannot list the bucket directory", e);
        let Some(items) = dir_items(&self.data_path(bucket, dir_part)).map_err(read)? else {
            return Ok(Vec::new());
        };

        let mut objects = Vec::new();
        let mut prefixes = BTreeSet::new();
        if !dir_part.is_empty() && name_prefix.is_empty() {
            objects.extend(self.marker_entry(bucket, dir_part));
        }
        for item in items {
            let item = item.map_err(read)?;
            if !item.name.starts_with(name_prefix) {
                continue;
            }
            if !item.is_dir {
                let key = format!("{dir_part}{}", item.name);
                objects.extend(file_entry(key, &item.entry).map_err(read)?);
                continue;
            }
            let sub = format!("{dir_part}{}/", item.name);
            if delimiter == Some("/") {
                if self
                    .subtree_has_key(bucket, &sub, &item.entry.path())
                    .map_err(read)?
                {
                    prefixes.insert(sub);
                }
            } else {
                self.walk(bucket, sub, item.entry.path(), &mut objects)
                    .map_err(read)?;
            }
        }
        if let Some(d) = delimiter.filter(|d| *d != "/") {
            objects.retain(|o| match o.key[prefix.len()..].find(d) {
                Some(pos) => {
                    prefixes.insert(o.key[..prefix.len() + pos + d.len()].to_owned());
                    false
                }
                None => true,
            });
        }
        let mut items: Vec<Item> = objects.into_iter().map(Item::Object).collect();
        items.extend(prefixes.into_iter().map(Item::Prefix));
        items.sort_by(|a, b| a.key().cmp(b.key()));
        items.dedup_by(|a, b| a.key() == b.key());
        Ok(items)
    }

    /// At most `max_keys` entries after `after`, with ETags; `encode` applies to keys and prefixes.
    fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max_keys: usize,
        encode: impl Fn(String) -> String,
    ) -> S3Result<Page> {
        let items = self.list(bucket, prefix, delimiter)?;
        let mut remaining = items
            .into_iter()
            .filter(|item| after.is_none_or(|after| item.key() > after))
            .peekable();
        let mut page = Page {
            objects: Vec::new(),
            prefixes: Vec::new(),
            next: None,
            max_keys: 0,
        };
        let mut last = None;
        for item in remaining.by_ref().take(max_keys) {
            last = Some(item.key().to_owned());
            match item {
                Item::Object(o) => {
                    let etag = if o.marker {
                        Some(EMPTY_MD5.to_owned())
                    } else {
                        self.stored_etag(bucket, &o.key)
                    };
                    page.objects.push(dto::Object {
                        key: Some(encode(o.key)),
                        size: Some(i64::try_from(o.size).unwrap_or(i64::MAX)),
                        last_modified: Some(dto::Timestamp::from(o.modified)),
                        e_tag: etag.map(dto::ETag::Strong),
                        ..Default::default()
                    });
                }
                Item::Prefix(p) => page.prefixes.push(dto::CommonPrefix {
                    prefix: Some(encode(p)),
                }),
            }
        }
        if max_keys > 0 && remaining.peek().is_some() {
            page.next = last;
        }
        Ok(page)
    }
}

/// What both ListObjects versions ask for.
struct Query<'a> {
    bucket: &'a str,
    prefix: Option<&'a str>,
    delimiter: Option<&'a str>,
    /// List only keys after this one (v1 marker; v2 continuation token or start-after).
    after: Option<&'a str>,
    max_keys: Option<i32>,
    encoding_type: Option<&'a dto::EncodingType>,
}

/// Keys, prefixes, delimiter and markers as `encoding-type` asks: `url` or as they are.
fn encoder(encoding_type: Option<&dto::EncodingType>) -> impl Fn(String) -> String + Copy + use<> {
    let url = encoding_type.is_some_and(|e| e.as_str() == dto::EncodingType::URL);
    move |s: String| if url { url_encode(&s) } else { s }
}

impl LocalFs {
    /// The one listing behind ListObjects v1 and v2.
    async fn list(&self, query: Query<'_>) -> S3Result<Page> {
        let (max_keys, limit) = page_limit(query.max_keys, "max-keys")?;
        let encode = encoder(query.encoding_type);
        let bucket = query.bucket.to_owned();
        let prefix = query.prefix.unwrap_or("").to_owned();
        let delimiter = query.delimiter.map(str::to_owned);
        let after = query.after.map(str::to_owned);
        let mut page = self
            .with_store(move |store| {
                store.list_page(
                    &bucket,
                    &prefix,
                    delimiter.as_deref(),
                    after.as_deref(),
                    limit,
                    encode,
                )
            })
            .await?;
        page.max_keys = max_keys;
        Ok(page)
    }

    pub(crate) async fn list_objects_v2_impl(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let input = req.input;
        let after = match (
            input.continuation_token.as_deref(),
            input.start_after.as_deref(),
        ) {
            (Some(token), Some(start)) => Some(token.max(start)),
            (token, start) => token.or(start),
        };
        let page = self
            .list(Query {
                bucket: &input.bucket,
                prefix: input.prefix.as_deref(),
                delimiter: input.delimiter.as_deref(),
                after,
                max_keys: input.max_keys,
                encoding_type: input.encoding_type.as_ref(),
            })
            .await?;
        let enc = encoder(input.encoding_type.as_ref());
        let key_count = i32::try_from(page.objects.len() + page.prefixes.len()).unwrap_or(i32::MAX);
        Ok(S3Response::new(dto::ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(input.prefix.map(enc).unwrap_or_default()),
            delimiter: input.delimiter.map(enc),
            start_after: input.start_after.map(enc),
            max_keys: Some(page.max_keys),
            key_count: Some(key_count),
            is_truncated: Some(page.next.is_some()),
            continuation_token: input.continuation_token,
            // Not encoded: the client sends it back as it is.
            next_continuation_token: page.next,
            contents: (!page.objects.is_empty()).then_some(page.objects),
            common_prefixes: (!page.prefixes.is_empty()).then_some(page.prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    pub(crate) async fn list_objects_impl(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        let input = req.input;
        let page = self
            .list(Query {
                bucket: &input.bucket,
                prefix: input.prefix.as_deref(),
                delimiter: input.delimiter.as_deref(),
                after: input.marker.as_deref(),
                max_keys: input.max_keys,
                encoding_type: input.encoding_type.as_ref(),
            })
            .await?;
        let enc = encoder(input.encoding_type.as_ref());
        Ok(S3Response::new(dto::ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(input.prefix.map(enc).unwrap_or_default()),
            delimiter: input.delimiter.map(enc),
            marker: input.marker.map(enc),
            max_keys: Some(page.max_keys),
            is_truncated: Some(page.next.is_some()),
            next_marker: page.next.map(enc),
            contents: (!page.objects.is_empty()).then_some(page.objects),
            common_prefixes: (!page.prefixes.is_empty()).then_some(page.prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_unreserved_characters_and_slashes() {
        assert_eq!(url_encode("a-b_c.d~e/f"), "a-b_c.d~e/f");
        assert_eq!(url_encode("a b+c%é"), "a%20b%2Bc%25%C3%A9");
        assert_eq!(url_encode("\n?=&"), "%0A%3F%3D%26");
    }
}
