//! The upload pool: one set of worker threads for the whole mount, fed part jobs over a
//! crossbeam channel, each job an UploadPart of one multipart upload.
//!
//! Also owns [`MultipartUpload`], the state a file's parts share: the upload id
//! (created lazily by the first part that needs it), the finished parts with their
//! ETags and checksums, and the first failure, which aborts the upload at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use log::{debug, error, info, warn};

use super::budget::Reservation;
use super::buffers::BufferPool;
use super::progress::{FileProgress, MountTotals};
use super::resume::Resume;
use super::{UploadError, upload_error};
use crate::s3::{ObjectHeaders, ObjectStore, UploadedPart, crc32c_base64};

#[derive(Debug, Default)]
struct Progress {
    in_flight: u32,
    finished: BTreeMap<u32, UploadedPart>,
    failure: Option<UploadError>,
    aborted: bool,
    /// Parts were in flight at the first abort: the next call repeats it.
    abort_again: bool,
    /// Stopped with enough parts in S3 to be worth resuming: kept, not aborted.
    parked: bool,
}

/// One file's multipart upload as its parts flow through the pool.
#[derive(Debug)]
pub(crate) struct MultipartUpload {
    key: String,
    /// Metadata sent with CreateMultipartUpload.
    headers: ObjectHeaders,
    upload_id: Mutex<Option<String>>,
    /// Held while CreateMultipartUpload is being sent (and retried), so only one is;
    /// `upload_id` itself is only ever locked briefly.
    creating: Mutex<()>,
    progress: Mutex<Progress>,
    changed: Condvar,
    /// The file's counters for `status` (the writer's).
    reported: Arc<FileProgress>,
}

impl MultipartUpload {
    pub(crate) fn new(
        key: String,
        headers: ObjectHeaders,
        reported: Arc<FileProgress>,
    ) -> Arc<Self> {
        Arc::new(Self {
            key,
            headers,
            upload_id: Mutex::new(None),
            creating: Mutex::new(()),
            progress: Mutex::new(Progress::default()),
            changed: Condvar::new(),
            reported,
        })
    }

    /// An upload that exists on the server already, with `finished` parts in it (a
    /// rename moved the file's parts there).
    pub(crate) fn resumed(
        key: String,
        headers: ObjectHeaders,
        upload_id: String,
        finished: Vec<UploadedPart>,
        reported: Arc<FileProgress>,
    ) -> Arc<Self> {
        let upload = Self::new(key, headers, reported);
        *upload
            .upload_id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(upload_id);
        upload.progress().finished = finished
            .into_iter()
            .map(|part| (part.part_number, part))
            .collect();
        upload
    }

    pub(crate) fn headers(&self) -> &ObjectHeaders {
        &self.headers
    }

    /// The key the upload was created for (a resumed rsync upload's differs from the
    /// writer's: see `writer::resume`).
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Counts a part S3 already holds (a resumed upload's, identical to what was
    /// written) as finished, without sending it.
    pub(crate) fn adopt(&self, part: UploadedPart) {
        self.reported.part_sent();
        self.reported.part_done(Some(part.size), false);
        self.progress().finished.insert(part.part_number, part);
    }

    pub(crate) fn reported(&self) -> &Arc<FileProgress> {
        &self.reported
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The upload id, creating the upload on first use; an outage shorter than
    /// `retry_budget` is ridden out, as for the parts themselves.
    fn ensure_created(
        &self,
        store: &dyn ObjectStore,
        retry_budget: Duration,
        resume: Option<&Resume>,
    ) -> Result<String, UploadError> {
        let _creating = self
            .creating
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(id) = self.upload_id() {
            return Ok(id);
        }
        let created = crate::s3::retry_within(
            retry_budget,
            || store.create_multipart_upload(&self.key, &self.headers, true),
            || self.failure().is_some(),
        )
        .map_err(UploadError::from)?;
        debug!("created multipart upload for {:?}: {created}", self.key);
        // Durable before the first part goes out: a daemon that dies from here on
        // leaves a resumable upload, not an orphan.
        if let Some(resume) = resume
            && let Err(e) = resume.journal().record(&self.key, &created, &self.headers)
        {
            warn!(
                "could not record the upload of {:?} in the journal ({e}): it cannot be resumed",
                self.key
            );
        }
        *self
            .upload_id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(created.clone());
        Ok(created)
    }

    pub(crate) fn upload_id(&self) -> Option<String> {
        self.upload_id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub(crate) fn failure(&self) -> Option<UploadError> {
        self.progress().failure.clone()
    }

    /// Records the first failure; later ones add nothing.
    pub(crate) fn fail(&self, reason: UploadError) {
        let mut progress = self.progress();
        if progress.failure.is_none() {
            progress.failure = Some(reason);
        }
        drop(progress);
        self.changed.notify_all();
    }

    /// Aborts the upload on the server, without waiting for parts in flight. Parts
    /// still in flight may land after the abort (S3 may keep them), or the upload may
    /// not be created yet: then the worker that finishes the last of them aborts it
    /// once more ([`MultipartUpload::part_finished`]). Safe to call again.
    pub(crate) fn abort(&self, aborter: &Aborter) {
        self.abort_with(aborter, false, true);
    }

    /// Like [`MultipartUpload::abort`], but the request goes out on the abort thread:
    /// for callers that must answer at once (a killed writer's close, unlink, unmount)
    /// whatever state the server is in. `may_park`: false when the mount is going
    /// away in order (unmount aborts what is unfinished, as it always has).
    pub(crate) fn abort_in_background(&self, aborter: &Aborter, may_park: bool) {
        self.abort_with(aborter, true, may_park);
    }

    /// Aborts, or parks the upload (see `resume`) when `may_park` and it is big enough.
    fn abort_with(&self, aborter: &Aborter, background: bool, may_park: bool) {
        let first = {
            let mut progress = self.progress();
            if progress.parked {
                return;
            }
            let parts = progress.finished.len() as u32;
            if let (Some(resume), Some(id)) = (&aborter.resume, self.upload_id())
                && may_park
                && !progress.aborted
                && resume.parks(parts)
            {
                progress.parked = true;
                drop(progress);
                if resume.park(&self.key, &id) {
                    return;
                }
                // Not in the journal: nothing could resume it, so it is aborted.
                progress = self.progress();
                progress.parked = false;
            }
            let first = !progress.aborted;
            progress.aborted = true;
            if progress.in_flight > 0 {
                progress.abort_again = true;
            }
            first
        };
        if first && let Some(id) = self.upload_id() {
            if let Some(resume) = &aborter.resume {
                resume.journal().remove(&id);
            }
            if background {
                aborter.abort_later(&self.key, &id);
            } else {
                aborter.abort(&self.key, &id);
            }
        }
    }

    /// The repeat abort owed once the last part in flight at the first abort is done.
    fn abort_again(&self, aborter: &Aborter) {
        if self.progress().parked {
            return;
        }
        if let Some(id) = self.upload_id() {
            aborter.abort(&self.key, &id);
        }
    }

    /// Waits until no part is in flight; returns the finished parts in order.
    pub(crate) fn wait_for_parts(&self) -> Result<Vec<UploadedPart>, UploadError> {
        let mut progress = self.progress();
        while progress.in_flight > 0 {
            progress = self
                .changed
                .wait(progress)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        match &progress.failure {
            Some(reason) => Err(reason.clone()),
            None => Ok(progress.finished.values().cloned().collect()),
        }
    }

    fn part_started(&self) {
        self.progress().in_flight += 1;
        self.reported.part_sent();
    }

    /// Records a finished part; true when it was the last part in flight of an
    /// upload aborted meanwhile, whose abort must then be repeated.
    fn part_finished(&self, part: Option<UploadedPart>) -> bool {
        let mut progress = self.progress();
        progress.in_flight -= 1;
        if let Some(part) = part {
            progress.finished.insert(part.part_number, part);
        }
        let repeat = progress.in_flight == 0 && std::mem::take(&mut progress.abort_again);
        drop(progress);
        self.changed.notify_all();
        repeat
    }
}

struct PartJob {
    upload: Arc<MultipartUpload>,
    part_number: u32,
    data: Bytes,
    /// Returned to the budget once the part is done.
    reservation: Reservation,
}

/// Aborts multipart uploads; one that cannot be aborted now (server unreachable) is
/// retried in the background until it is, so no upload is left to cost money.
#[derive(Clone)]
pub(crate) struct Aborter {
    store: Arc<dyn ObjectStore>,
    retry: Sender<(String, String)>,
    retry_budget: Duration,
    /// The mount's counters, for what the workers send and retry.
    totals: Arc<MountTotals>,
    /// The resume journal, when uploads may be parked (`--resume-window`).
    resume: Option<Arc<Resume>>,
}

/// How often and how long an abort that failed is tried again.
const ABORT_RETRY_INTERVAL: Duration = Duration::from_secs(2);
const ABORT_RETRY_FOR: Duration = Duration::from_secs(3600);

impl Aborter {
    /// Hands the abort to the abort thread, which tries it at once and then retries.
    pub(crate) fn abort_later(&self, key: &str, upload_id: &str) {
        if self
            .retry
            .send((key.to_owned(), upload_id.to_owned()))
            .is_err()
        {
            self.abort(key, upload_id);
        }
    }

    pub(crate) fn abort(&self, key: &str, upload_id: &str) {
        match self.store.abort_multipart_upload(key, upload_id) {
            Ok(()) => info!("aborted multipart upload of {key:?}"),
            Err(e) => {
                warn!(
                    "could not abort multipart upload {upload_id} of {key:?} ({e}); retrying in the background"
                );
                let _ = self.retry.send((key.to_owned(), upload_id.to_owned()));
            }
        }
    }
}

fn run_abort_retries(store: &dyn ObjectStore, failed: &Receiver<(String, String)>) {
    let mut pending: Vec<(String, String, Instant)> = Vec::new();
    loop {
        match failed.recv_timeout(ABORT_RETRY_INTERVAL) {
            Ok((key, id)) if !pending.iter().any(|(_, known, _)| *known == id) => {
                pending.push((key, id, Instant::now()))
            }
            // The same upload may be handed over by several of its failing parts.
            Ok(_) => {}
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                for (key, id, _) in pending.drain(..) {
                    if let Err(e) = store.abort_multipart_upload(&key, &id) {
                        error!(
                            "multipart upload {id} of {key:?} is left behind ({e}): remove it with `s3upfs cleanup` or a lifecycle rule"
                        );
                    }
                }
                return;
            }
        }
        pending.retain(
            |(key, id, since)| match store.abort_multipart_upload(key, id) {
                Ok(()) => {
                    info!("aborted multipart upload of {key:?} (on retry)");
                    false
                }
                Err(e) if since.elapsed() > ABORT_RETRY_FOR => {
                    error!("giving up aborting multipart upload {id} of {key:?}: {e}");
                    false
                }
                Err(_) => true,
            },
        );
    }
}

/// Parts handed to the pool and not yet finished. Bounded so that a writer outrunning the
/// network waits instead of queueing its whole file in memory: memory stays flat
/// whatever the file size, well under the budget.
struct Backlog {
    parts: Mutex<usize>,
    room: Condvar,
    limit: usize,
}

impl Backlog {
    fn count(&self) -> MutexGuard<'_, usize> {
        self.parts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn finished_one(&self) {
        *self.count() -= 1;
        self.room.notify_all();
    }
}

pub(crate) struct UploadPool {
    jobs: Mutex<Option<Sender<PartJob>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    aborter: Mutex<Option<Aborter>>,
    backlog: Arc<Backlog>,
    buffers: Arc<BufferPool>,
}

impl UploadPool {
    pub(crate) fn start(
        store: Arc<dyn ObjectStore>,
        workers: usize,
        retry_budget: Duration,
        totals: Arc<MountTotals>,
        resume: Option<Arc<Resume>>,
    ) -> std::io::Result<Self> {
        let (sender, receiver) = crossbeam_channel::unbounded::<PartJob>();
        let (retry_sender, retry_receiver) = crossbeam_channel::unbounded();
        // At most 4 idle part buffers and 64 MiB: the README's bound beside the budget.
        let buffers = Arc::new(BufferPool::new(4, 64 << 20));
        let backlog = Arc::new(Backlog {
            parts: Mutex::new(0),
            room: Condvar::new(),
            // Every worker busy plus as many waiting: the network never idles for lack of parts.
            limit: 2 * workers.max(1),
        });
        let aborter = Aborter {
            store: Arc::clone(&store),
            retry: retry_sender,
            retry_budget,
            totals,
            resume,
        };
        let mut handles = Vec::with_capacity(workers + 1);
        for index in 0..workers.max(1) {
            let receiver = receiver.clone();
            let aborter = aborter.clone();
            let backlog = Arc::clone(&backlog);
            let buffers = Arc::clone(&buffers);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("upload-{index}"))
                    .spawn(move || run_worker(&aborter, &receiver, &backlog, &buffers))?,
            );
        }
        let retry_client = Arc::clone(&store);
        handles.push(
            std::thread::Builder::new()
                .name("abort-retry".to_owned())
                .spawn(move || run_abort_retries(retry_client.as_ref(), &retry_receiver))?,
        );
        Ok(Self {
            jobs: Mutex::new(Some(sender)),
            workers: Mutex::new(handles),
            aborter: Mutex::new(Some(aborter)),
            backlog,
            buffers,
        })
    }

    /// Recycled part buffers, shared with the writers that fill them.
    pub(crate) fn buffers(&self) -> &BufferPool {
        &self.buffers
    }

    /// Whether a part handed over now would be uploaded soon, rather than wait in memory.
    pub(crate) fn has_room(&self) -> bool {
        *self.backlog.count() < self.backlog.limit
    }

    /// Waits until [`has_room`](Self::has_room), at most `bound`; false if there is
    /// still none. Progress needs no memory, and every queued part ends (uploaded or
    /// failed) within its retry budget, so the bound is only a guard.
    pub(crate) fn wait_for_room(&self, bound: Duration) -> bool {
        let deadline = std::time::Instant::now() + bound;
        let mut count = self.backlog.count();
        while *count >= self.backlog.limit {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            count = self
                .backlog
                .room
                .wait_timeout(count, (deadline - now).min(Duration::from_millis(100)))
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        true
    }

    /// The aborter of this pool (None once shut down).
    pub(crate) fn aborter(&self) -> Option<Aborter> {
        self.aborter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Queues a part. The channel is unbounded on purpose: its length is already
    /// bounded by the memory budget, since every queued part holds a reservation.
    pub(crate) fn submit(
        &self,
        upload: &Arc<MultipartUpload>,
        part_number: u32,
        data: Vec<u8>,
        mut reservation: Reservation,
    ) {
        reservation.start_upload();
        upload.part_started();
        *self.backlog.count() += 1;
        let job = PartJob {
            upload: Arc::clone(upload),
            part_number,
            data: Bytes::from(data),
            reservation,
        };
        let sender = self
            .jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let rejected = match sender {
            Some(sender) => sender.send(job).err().map(|e| e.into_inner()),
            None => Some(job),
        };
        if let Some(job) = rejected {
            job.upload.fail(upload_error!(
                "the mount is shutting down; part not uploaded"
            ));
            // No worker is left to repeat an abort: the shutdown aborts what is open.
            let _ = job.upload.part_finished(None);
            job.upload.reported.part_done(None, false);
            self.backlog.finished_one();
        }
    }

    /// Stops taking parts and waits for the workers to finish the queued ones.
    pub(crate) fn shutdown(&self) {
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        self.aborter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let workers = std::mem::take(
            &mut *self
                .workers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for worker in workers {
            if worker.join().is_err() {
                warn!("an upload worker panicked");
            }
        }
    }
}

fn run_worker(
    aborter: &Aborter,
    jobs: &Receiver<PartJob>,
    backlog: &Backlog,
    buffers: &BufferPool,
) {
    for job in jobs.iter() {
        let upload = Arc::clone(&job.upload);
        let (part, retried) = upload_one(aborter, &job);
        let bytes = part.as_ref().map(|_| job.data.len() as u64);
        if let Some(bytes) = bytes {
            aborter.totals.uploaded(bytes);
        }
        upload.reported.part_done(bytes, retried);
        // The buffer goes back before the reservation does, so a writer woken by the
        // freed memory finds it waiting.
        let PartJob {
            data, reservation, ..
        } = job;
        buffers.give_back(data);
        drop(reservation);
        if upload.part_finished(part) {
            upload.abort_again(aborter);
        }
        backlog.finished_one();
    }
}

/// Uploads one part (the SDK retries transient errors with backoff); on final failure
/// fails and aborts the whole upload. Also says whether it was tried more than once.
fn upload_one(aborter: &Aborter, job: &PartJob) -> (Option<UploadedPart>, bool) {
    let store = &aborter.store;
    let upload = &job.upload;
    if upload.failure().is_some() {
        return (None, false);
    }
    let mut attempts = 0u32;
    let result = upload
        .ensure_created(
            store.as_ref(),
            aborter.retry_budget,
            aborter.resume.as_deref(),
        )
        .and_then(|upload_id| {
            let checksum = crc32c_base64(&job.data);
            crate::s3::retry_within(
                aborter.retry_budget,
                || {
                    attempts += 1;
                    if attempts > 1 {
                        upload.reported.part_retried(attempts == 2);
                        aborter.totals.retried();
                    }
                    store.upload_part(
                        &upload.key,
                        &upload_id,
                        job.part_number,
                        job.data.clone(),
                        &checksum,
                    )
                },
                || upload.failure().is_some(),
            )
            .map(|etag| UploadedPart {
                part_number: job.part_number,
                etag,
                checksum_crc32c: Some(checksum.clone()),
                size: job.data.len() as u64,
            })
            .map_err(UploadError::from)
        });
    let retried = attempts > 1;
    let part = match result {
        Ok(part) => {
            debug!(
                "uploaded part {} of {:?} ({} bytes)",
                job.part_number,
                upload.key,
                job.data.len()
            );
            Some(part)
        }
        Err(reason) => {
            if upload.failure().is_some() {
                // Another part failed first and aborted the upload already.
                return (None, retried);
            }
            let reason = reason.context(&format!("part {} failed", job.part_number));
            error!("upload of {:?} failed: {reason}; aborting it", upload.key);
            upload.fail(reason);
            upload.abort(aborter);
            None
        }
    };
    (part, retried)
}
