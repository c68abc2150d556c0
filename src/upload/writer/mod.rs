//! One object being written: bytes from FUSE writes go into part buffers, full parts go
//! to the pool, and `commit` makes the object appear (PutObject for a single part,
//! CompleteMultipartUpload otherwise) or fails and leaves nothing behind.

use std::sync::Arc;
use std::time::Instant;

use log::warn;

mod commit;
mod moves;
mod resume;

use super::budget::Reservation;
use super::pool::MultipartUpload;
use super::progress::{FileProgress, FileState};
use super::{UploadContext, UploadError, upload_error};
use crate::s3::ObjectHeaders;

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WriteError {
    /// Past the largest file the part schedule reaches.
    TooLarge { max: u64 },
    /// Into bytes already handed to the upload pool.
    AlreadyUploaded { writable_from: u64, size: u64 },
    /// The upload failed; the reason was logged.
    Failed(UploadError),
    /// The object was already completed (fsync, or close from the opener).
    Completed,
}

impl WriteError {
    pub(crate) fn errno(&self) -> i32 {
        match self {
            WriteError::TooLarge { .. } => libc::EFBIG,
            WriteError::AlreadyUploaded { .. } => libc::EINVAL,
            WriteError::Failed(reason) => reason.errno(),
            WriteError::Completed => libc::EIO,
        }
    }
}

/// How far a write got. A writer never waits itself: it says what it needs, and the
/// caller waits for that without holding the writer's lock, then calls again.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WriteProgress {
    Done,
    /// The next part must wait; `written` bytes were taken. Get what `need` names
    /// ([`crate::upload::UploadContext::wait_for`]), hand any reservation over with
    /// [`ObjectWriter::give_spare`], and call again with the rest.
    NeedsMemory {
        written: usize,
        need: Need,
    },
}

/// What a blocked writer waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// A reservation of this many bytes from the memory budget.
    Memory(u64),
    /// Room in the upload pool's backlog.
    Room,
}

#[derive(Debug)]
struct PartBuffer {
    number: u32,
    start: u64,
    capacity: usize,
    data: Vec<u8>,
    reservation: Reservation,
}

impl PartBuffer {
    fn end(&self) -> u64 {
        self.start + self.data.len() as u64
    }

    fn is_full(&self) -> bool {
        self.data.len() >= self.capacity
    }
}

/// The bytes of an object still being written.
#[derive(Debug)]
struct Parts {
    size: u64,
    /// Part 1, kept in memory until completion so a writer can patch a header.
    retained_first: Option<PartBuffer>,
    current: Option<PartBuffer>,
    /// Number of the part that `current` is, or the next one to allocate.
    filling: u32,
    upload: Option<Arc<MultipartUpload>>,
    started: Instant,
    /// The parked upload's parts this write may reuse (a resumed upload).
    reuse: Option<Box<resume::Reuse>>,
}

#[derive(Debug)]
enum State {
    Writing(Parts),
    Completed {
        size: u64,
    },
    Failed(UploadError),
    /// Unlinked while open: writes are accepted and dropped, nothing is uploaded.
    Discarded,
}

pub(crate) struct ObjectWriter {
    context: Arc<UploadContext>,
    key: String,
    headers: ObjectHeaders,
    state: State,
    /// Memory reserved for this writer by a caller that waited for it.
    spare: Option<Reservation>,
    /// What the last refused `ensure_buffer` was missing.
    need: Need,
    /// This file's counters for `status`.
    progress: Arc<FileProgress>,
}

enum Source<'a> {
    Bytes(&'a [u8]),
    Zeros(u64),
}

impl Source<'_> {
    fn len(&self) -> u64 {
        match self {
            Source::Bytes(bytes) => bytes.len() as u64,
            Source::Zeros(count) => *count,
        }
    }
}

impl ObjectWriter {
    pub(crate) fn new(context: Arc<UploadContext>, key: String, headers: ObjectHeaders) -> Self {
        Self {
            context,
            key,
            headers,
            state: State::Writing(Parts::empty()),
            spare: None,
            need: Need::Room,
            progress: Arc::default(),
        }
    }

    /// This file's counters (read by `status` without taking the writer's lock).
    pub(crate) fn progress(&self) -> Arc<FileProgress> {
        Arc::clone(&self.progress)
    }

    /// Memory a caller reserved while waiting on this writer's behalf; used by the
    /// next part that needs as much (and returned to the budget if none does).
    pub(crate) fn give_spare(&mut self, reservation: Reservation) {
        self.spare = Some(reservation);
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Uploads not yet started use the new key; used by rename of a file being written.
    /// (An empty completion is not started either: dd's first close; writes restart it.)
    pub(crate) fn set_key(&mut self, key: String) -> bool {
        match &self.state {
            State::Writing(parts) if parts.upload.is_none() => {
                self.key = key;
                true
            }
            State::Completed { size: 0 } => {
                // The close then puts the (still empty) object under the new name.
                self.key = key;
                self.state = State::Writing(Parts::empty());
                true
            }
            _ => false,
        }
    }

    pub(crate) fn headers(&self) -> &ObjectHeaders {
        &self.headers
    }

    /// Metadata changes (chmod, utimes) ride along with the upload.
    pub(crate) fn set_headers(&mut self, headers: ObjectHeaders) {
        self.headers = headers;
    }

    /// Logical size: the end of the furthest byte written.
    pub(crate) fn size(&self) -> u64 {
        match &self.state {
            State::Writing(parts) => parts.size,
            State::Completed { size } => *size,
            State::Failed(_) | State::Discarded => 0,
        }
    }

    pub(crate) fn is_completed(&self) -> bool {
        matches!(self.state, State::Completed { .. } | State::Discarded)
    }

    /// Completed with bytes, or discarded: nothing more can change the object. (An
    /// empty completion is not final: dd closes a duplicate before it writes.)
    pub(crate) fn is_final(&self) -> bool {
        matches!(self.state, State::Completed { size } if size > 0)
            || matches!(self.state, State::Discarded)
    }

    /// Completed as an empty object (dd's first close): later writes restart it.
    pub(crate) fn is_empty_completion(&self) -> bool {
        matches!(self.state, State::Completed { size: 0 })
    }

    /// Still taking bytes for an upload not yet completed.
    pub(crate) fn is_writing(&self) -> bool {
        matches!(self.state, State::Writing(_))
    }

    /// Failed, or a part of its upload failed already (the close will report it).
    pub(crate) fn has_failed(&self) -> bool {
        match &self.state {
            State::Failed(_) => true,
            State::Writing(parts) => parts
                .upload
                .as_ref()
                .is_some_and(|upload| upload.failure().is_some()),
            _ => false,
        }
    }

    pub(crate) fn failure(&self) -> Option<&UploadError> {
        match &self.state {
            State::Failed(reason) => Some(reason),
            _ => None,
        }
    }

    /// Writes `data` at `offset`. Never waits: see [`WriteProgress::NeedsMemory`].
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) -> Result<WriteProgress, WriteError> {
        if let State::Completed { size: 0 } = self.state {
            // Completed empty (dd closes a duplicate before writing): start over.
            self.state = State::Writing(Parts::empty());
        }
        let parts = match &mut self.state {
            State::Writing(parts) => parts,
            State::Discarded => return Ok(WriteProgress::Done),
            State::Failed(reason) => return Err(WriteError::Failed(reason.clone())),
            State::Completed { .. } => return Err(WriteError::Completed),
        };
        if let Some(upload) = &parts.upload
            && let Some(reason) = upload.failure()
        {
            return Err(WriteError::Failed(reason));
        }
        let max = self.context.schedule.max_file_size();
        if offset.saturating_add(data.len() as u64) > max {
            return Err(WriteError::TooLarge { max });
        }
        if offset > parts.size {
            let gap = offset - parts.size;
            let filled = self.append(Source::Zeros(gap))?;
            if filled < gap {
                return Ok(WriteProgress::NeedsMemory {
                    written: 0,
                    need: self.need,
                });
            }
        }
        let mut position = offset;
        let mut taken = 0usize;
        while taken < data.len() {
            let rest = &data[taken..];
            let size = self.writing_parts().map_or(0, |parts| parts.size);
            let count = if position < size {
                self.overwrite(position, rest)?
            } else {
                let appended = self.append(Source::Bytes(rest))? as usize;
                if appended == 0 {
                    return Ok(WriteProgress::NeedsMemory {
                        written: taken,
                        need: self.need,
                    });
                }
                appended
            };
            position += count as u64;
            taken += count;
        }
        Ok(WriteProgress::Done)
    }

    fn writing_parts(&mut self) -> Option<&mut Parts> {
        match &mut self.state {
            State::Writing(parts) => Some(parts),
            _ => None,
        }
    }

    /// Copies into bytes written before but not yet handed to the pool.
    fn overwrite(&mut self, position: u64, bytes: &[u8]) -> Result<usize, WriteError> {
        let key = self.key.clone();
        let Some(parts) = self.writing_parts() else {
            return Err(WriteError::Completed);
        };
        for buffer in [&mut parts.retained_first, &mut parts.current]
            .into_iter()
            .flatten()
        {
            if position >= buffer.start && position < buffer.end() {
                let offset = (position - buffer.start) as usize;
                let count = bytes.len().min(buffer.data.len() - offset);
                buffer.data[offset..offset + count].copy_from_slice(&bytes[..count]);
                return Ok(count);
            }
        }
        let writable_from = parts.current.as_ref().map_or(parts.size, |c| c.start);
        warn!(
            "write to {key:?} at offset {position} refused (EINVAL): those bytes were already uploaded; \
             the writable window is {writable_from}..{} (plus the first part while it is held)",
            parts.size
        );
        Err(WriteError::AlreadyUploaded {
            writable_from,
            size: parts.size,
        })
    }

    /// Appends at the end; returns how much fit before memory ran out (without blocking).
    fn append(&mut self, source: Source<'_>) -> Result<u64, WriteError> {
        let mut appended = 0u64;
        while appended < source.len() {
            if !self.ensure_buffer()? {
                break;
            }
            let Some(parts) = self.writing_parts() else {
                return Err(WriteError::Completed);
            };
            let Some(buffer) = parts.current.as_mut() else {
                break;
            };
            let space = (buffer.capacity - buffer.data.len()) as u64;
            let count = space.min(source.len() - appended);
            match &source {
                Source::Bytes(bytes) => buffer
                    .data
                    .extend_from_slice(&bytes[appended as usize..(appended + count) as usize]),
                Source::Zeros(_) => {
                    let new_len = buffer.data.len() + count as usize;
                    buffer.data.resize(new_len, 0);
                }
            }
            parts.size += count;
            appended += count;
        }
        Ok(appended)
    }

    /// Makes sure `current` has room, rotating a full part out. Returns false (with
    /// `self.need` set) when memory or pool room is short.
    fn ensure_buffer(&mut self) -> Result<bool, WriteError> {
        let context = Arc::clone(&self.context);
        let key = self.key.clone();
        let headers = self.headers.clone();
        let progress = Arc::clone(&self.progress);
        let spare = self.spare.take();
        let State::Writing(parts) = &mut self.state else {
            return Err(WriteError::Completed);
        };
        if let Some(buffer) = &parts.current {
            if !buffer.is_full() {
                self.spare = spare;
                return Ok(true);
            }
            if buffer.number > 1 && !context.pool.has_room() {
                self.spare = spare;
                self.need = Need::Room;
                return Ok(false);
            }
            let Some(full) = parts.current.take() else {
                return Ok(false);
            };
            parts.filling = full.number + 1;
            let upload = parts.upload_for(key, headers, &progress);
            if full.number == 1 {
                parts.retained_first = Some(full);
            } else {
                parts.send_part(&context, &upload, full);
            }
        }
        let number = parts.filling;
        let size = context.schedule.part_size(number);
        let reservation =
            match spare.filter(|spare| spare.bytes() == size.min(context.budget.limit())) {
                Some(reservation) => reservation,
                None => match context.budget.try_reserve(size) {
                    Some(reservation) => reservation,
                    None => {
                        // Waiting while holding part 1 could starve everyone: send it now.
                        parts.send_retained_first(&context);
                        self.need = Need::Memory(size);
                        return Ok(false);
                    }
                },
            };
        parts.current = Some(PartBuffer {
            number,
            start: context.schedule.part_start(number),
            capacity: size as usize,
            data: context.pool.buffers().take(size as usize),
            reservation,
        });
        Ok(true)
    }

    /// Truncates to `size`: extending fills zeros, shrinking works only to 0 and only
    /// while nothing has been uploaded yet. Extending may stop short for memory, like
    /// a write: call again after waiting for the need.
    pub(crate) fn truncate(&mut self, size: u64) -> Result<WriteProgress, WriteError> {
        let current_size = self.size();
        if size > current_size {
            let max = self.context.schedule.max_file_size();
            if size > max {
                return Err(WriteError::TooLarge { max });
            }
            if let State::Completed { size: 0 } = self.state {
                self.state = State::Writing(Parts::empty());
            }
            let wanted = size - current_size;
            if self.append(Source::Zeros(wanted))? < wanted {
                return Ok(WriteProgress::NeedsMemory {
                    written: 0,
                    need: self.need,
                });
            }
            return Ok(WriteProgress::Done);
        }
        match &mut self.state {
            _ if size == current_size => Ok(WriteProgress::Done),
            State::Writing(parts) if size == 0 && parts.upload.is_none() => {
                *parts = Parts::empty();
                Ok(WriteProgress::Done)
            }
            State::Completed { .. } if size == 0 => {
                self.state = State::Writing(Parts::empty());
                Ok(WriteProgress::Done)
            }
            _ => Err(WriteError::AlreadyUploaded {
                writable_from: current_size,
                size: current_size,
            }),
        }
    }
}

impl Parts {
    fn empty() -> Self {
        Self {
            size: 0,
            retained_first: None,
            current: None,
            filling: 1,
            upload: None,
            started: Instant::now(),
            reuse: None,
        }
    }

    fn part_count(&self) -> u32 {
        match &self.current {
            Some(buffer) if buffer.data.is_empty() => buffer.number - 1,
            Some(buffer) => buffer.number,
            None => self.filling - 1,
        }
    }

    fn send_retained_first(&mut self, context: &UploadContext) {
        if let (Some(first), Some(upload)) = (self.retained_first.take(), self.upload.clone()) {
            self.send_part(context, &upload, first);
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if matches!(self.state, State::Writing(_)) {
            self.discard("closed without completing");
        }
    }
}
