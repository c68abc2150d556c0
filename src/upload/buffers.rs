//! Recycled part buffers. A part buffer is megabytes; allocating a fresh one per part
//! costs a page fault per 4 KiB as it fills (about 0.3 CPU s/GiB here), and freeing it
//! either returns it to the system (more faults next time) or leaves it in malloc's
//! arenas (resident memory that grows with the file size). Handing the few most recent
//! buffers back to the next part avoids both.

use std::sync::Mutex;

use bytes::Bytes;

pub(crate) struct BufferPool {
    /// Idle buffers, oldest first.
    free: Mutex<Vec<Vec<u8>>>,
    keep: usize,
    keep_bytes: usize,
}

impl BufferPool {
    /// A pool keeping at most `keep` idle buffers of at most `keep_bytes` together: this
    /// memory is outside the budget's count, so it must stay small whatever part sizes
    /// the files of the mount have gone through.
    pub(crate) fn new(keep: usize, keep_bytes: usize) -> Self {
        Self {
            free: Mutex::new(Vec::new()),
            keep,
            keep_bytes,
        }
    }

    /// An empty buffer of exactly `capacity` bytes, reused when one is idle.
    pub(crate) fn take(&self, capacity: usize) -> Vec<u8> {
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match free.iter().position(|buffer| buffer.capacity() == capacity) {
            Some(index) => {
                let mut buffer = free.swap_remove(index);
                buffer.clear();
                buffer
            }
            None => Vec::with_capacity(capacity),
        }
    }

    /// Takes back an uploaded part's bytes if nothing else still refers to them.
    pub(crate) fn give_back(&self, data: Bytes) {
        let Ok(unique) = data.try_into_mut() else {
            return;
        };
        let buffer = Vec::from(unique);
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buffer.capacity() > self.keep_bytes {
            return;
        }
        // The newest buffers are the likeliest to fit the next parts (part sizes only
        // grow within a file): older ones, of earlier tiers, go first.
        free.push(buffer);
        while free.len() > self.keep
            || free.iter().map(Vec::capacity).sum::<usize>() > self.keep_bytes
        {
            free.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_handed_out_again_with_its_capacity() {
        let pool = BufferPool::new(2, 8 << 20);
        let mut buffer = pool.take(1 << 20);
        buffer.extend_from_slice(&[7u8; 1000]);
        let address = buffer.as_ptr();
        pool.give_back(Bytes::from(buffer));
        let again = pool.take(1 << 20);
        assert_eq!(again.as_ptr(), address);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), 1 << 20);
    }

    #[test]
    fn shared_bytes_are_not_taken_back() {
        let pool = BufferPool::new(2, 8 << 20);
        let bytes = Bytes::from(pool.take(4096));
        let _still_used = bytes.clone();
        pool.give_back(bytes);
        assert!(pool.free.lock().expect("lock").is_empty());
    }

    #[test]
    fn buffers_of_an_earlier_part_size_are_evicted_not_stranded() {
        let pool = BufferPool::new(2, 3 << 20);
        for _ in 0..2 {
            pool.give_back(Bytes::from(vec![0u8; 1 << 20]));
        }
        // Files moved on to 2 MiB parts: the 1 MiB buffers must not keep them out.
        pool.give_back(Bytes::from(vec![0u8; 2 << 20]));
        pool.give_back(Bytes::from(vec![0u8; 2 << 20]));
        let free = pool.free.lock().expect("lock");
        let capacities: Vec<usize> = free.iter().map(Vec::capacity).collect();
        assert_eq!(capacities, vec![2 << 20], "within 3 MiB, newest kept");
    }
}
