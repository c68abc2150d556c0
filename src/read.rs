//! Reads of finished objects: ranged GETs with a readahead window that doubles while
//! reads stay sequential (up to a fixed bound per open file) and falls back to small
//! ranges for random access.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::s3::{ObjectStore, S3Error};

const INITIAL_WINDOW: u64 = 1 << 20;
/// Memory one open file may hold for readahead.
pub(crate) const MAX_WINDOW: u64 = 32 << 20;

pub(crate) struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    key: String,
    size: u64,
    /// Bytes older than this are fetched again: another client may have changed or
    /// deleted the object, and we never serve stale bytes past the metadata TTL.
    ttl: Duration,
    buffered_at: Instant,
    buffered_from: u64,
    buffered: Bytes,
    next_sequential: u64,
    window: u64,
}

impl ObjectReader {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, key: String, size: u64, ttl: Duration) -> Self {
        Self {
            store,
            key,
            size,
            ttl,
            buffered_at: Instant::now(),
            buffered_from: 0,
            buffered: Bytes::new(),
            next_sequential: 0,
            window: INITIAL_WINDOW,
        }
    }

    /// The file was renamed while open: later fetches read the object's new key (the
    /// old one is deleted once the rename's copy exists).
    pub(crate) fn follow(&mut self, key: &str) {
        if self.key != key {
            self.key = key.to_owned();
        }
    }

    pub(crate) fn read(&mut self, offset: u64, length: u32) -> Result<Bytes, S3Error> {
        if offset >= self.size {
            return Ok(Bytes::new());
        }
        let length = u64::from(length).min(self.size - offset);
        let end = offset + length;
        let buffered_end = self.buffered_from + self.buffered.len() as u64;
        let fresh = self.buffered_at.elapsed() < self.ttl;
        if fresh && offset >= self.buffered_from && end <= buffered_end {
            self.next_sequential = end;
            let start = (offset - self.buffered_from) as usize;
            return Ok(self.buffered.slice(start..start + length as usize));
        }
        self.window = if offset == self.next_sequential {
            (self.window * 2).min(MAX_WINDOW)
        } else {
            INITIAL_WINDOW
        };
        let fetch = self.window.max(length).min(self.size - offset);
        // Drop the old window before fetching the next, so at most one is held.
        self.buffered = Bytes::new();
        let fetched = self
            .store
            .get_object(&self.key, Some(offset..offset + fetch))?;
        if (fetched.len() as u64) < length {
            return Err(S3Error::protocol(
                "GetObject",
                &self.key,
                "object is shorter than expected (changed by another client?)",
            ));
        }
        self.buffered_from = offset;
        self.buffered_at = Instant::now();
        self.buffered = fetched;
        self.next_sequential = end;
        Ok(self.buffered.slice(0..length as usize))
    }
}
