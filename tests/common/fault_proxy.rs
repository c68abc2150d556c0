//! A fault-injecting HTTP/1.1 proxy for S3 traffic, between s3upfs and Garage.
//!
//! [`FaultProxy::start`] listens on `127.0.0.1:<random port>` and forwards every request to the
//! upstream endpoint unchanged (the `Host` header included, so SigV4 signatures stay valid).
//! Keep-alive works on both sides: each client connection gets its own thread and its own
//! upstream connection. Each request is classified as an S3 operation ([`Op`]) from its method,
//! query and headers, counted and recorded ([`Record`]); rules set at run time through the handle
//! decide whether a [`Fault`] is injected into it:
//!
//! - [`Fault::InternalError`] / [`Fault::SlowDown`]: the body is read and discarded, then a 500 /
//!   503 with a proper S3 XML error body is answered; the connection stays usable.
//! - [`Fault::ResetAfter`]: after K bytes of the request body the connection is reset (RST).
//! - [`Fault::Delay`]: forwarded normally, but the response is held back for D.
//! - [`Fault::FlipByte`]: one byte in the middle of the body is inverted before forwarding (the
//!   server's checksum check has to catch it).
//!
//! [`FaultProxy::refuse_for`] closes the listening socket and resets every open connection
//! (so new connections get ECONNREFUSED and pooled ones fail), then listens again on the same
//! port after the given time. [`FaultProxy::refuse_for_with`]`(d, Refusal::Reset)` accepts
//! instead, records each request head (`Record::refused`) and resets the connection: the same
//! outage for the client, with every retry attempt visible in [`FaultProxy::records`].
//!
//! Counters: [`FaultProxy::count`], [`FaultProxy::successes`], [`FaultProxy::injected_failures`],
//! [`FaultProxy::part_attempts`] / [`FaultProxy::part_attempts_of`], [`FaultProxy::summary`].
//! `FAULT_PROXY_TRACE=1` prints one line per request on stderr.
//!
//! ```ignore
//! let proxy = FaultProxy::start(&server.endpoint());
//! proxy.set_fault(Op::UploadPart, When::Nth(2), Fault::InternalError);
//! proxy.add_rule(Rule::new(Op::UploadPart, When::Always, Fault::FlipByte).part(3).limit(1));
//! // ... point s3upfs at proxy.endpoint() ...
//! assert_eq!(proxy.count(Op::UploadPart), parts + proxy.injected_failures(Op::UploadPart));
//! ```
//!
//! Stopped (listener closed, all connections reset) on drop.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Longest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// How long the proxy waits for Garage's answer before giving the request up.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(300);
/// How often the accept loop looks at the refuse/stop state.
const ACCEPT_POLL: Duration = Duration::from_millis(5);

// ---------------------------------------------------------------------------------------------
// Operations, faults, rules
// ---------------------------------------------------------------------------------------------

/// The S3 operation of a request, from its method, query and headers (path-style addressing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    ListMultipartUploads,
    PutObject,
    CopyObject,
    GetObject,
    HeadObject,
    DeleteObject,
    DeleteObjects,
    ListObjectsV2,
    ListObjects,
    HeadBucket,
    Other,
    /// Only for rules: matches every request. No request is classified as `Any`.
    Any,
}

impl Op {
    fn matches(self, op: Op) -> bool {
        self == Op::Any || self == op
    }
}

/// What is done to a request a rule fires on.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Read and discard the body, answer `500 InternalError` (S3 XML error body).
    InternalError,
    /// Read and discard the body, answer `503 SlowDown` (S3 XML error body).
    SlowDown,
    /// Read this many bytes of the request body (all of it if shorter), then reset the
    /// connection (RST, no response).
    ResetAfter(u64),
    /// Forward normally; hold the response back this long before sending it on.
    Delay(Duration),
    /// Invert one byte (the middle one) of the request body before forwarding it.
    FlipByte,
    /// One of these, picked by the same deterministic draw that decided to fire.
    OneOf(Vec<Fault>),
}

impl Fault {
    /// Whether this fault keeps the request from succeeding by itself (errors and resets;
    /// a flipped byte fails only if the server notices, a delay never).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Fault::InternalError | Fault::SlowDown | Fault::ResetAfter(_)
        )
    }
}

/// Which of the requests a rule applies to (op, key and part filters) it fires on.
#[derive(Clone, Debug, PartialEq)]
pub enum When {
    /// Every one.
    Always,
    /// The Nth one (1-based) counted from when the rule was set.
    Nth(u64),
    /// Each of these (1-based, counted from when the rule was set).
    Nths(Vec<u64>),
    /// Each one with probability `p`, decided by a hash of `(seed, index)`: the same seed
    /// gives the same decisions for the same request indexes.
    Fraction { p: f64, seed: u64 },
}

/// A fault, the requests it applies to and when it fires. Rules are tried in the order they
/// were added; the first one that fires decides.
#[derive(Clone, Debug)]
pub struct Rule {
    op: Op,
    when: When,
    fault: Fault,
    key: Option<String>,
    part: Option<u32>,
    limit: Option<u64>,
    /// Matching requests seen since the rule was set.
    seen: u64,
    fired: u64,
}

impl Rule {
    pub fn new(op: Op, when: When, fault: Fault) -> Rule {
        Rule {
            op,
            when,
            fault,
            key: None,
            part: None,
            limit: None,
            seen: 0,
            fired: 0,
        }
    }
    /// Only requests for this object key.
    pub fn key(mut self, key: &str) -> Rule {
        self.key = Some(key.to_string());
        self
    }
    /// Only UploadPart requests with this part number.
    pub fn part(mut self, part_number: u32) -> Rule {
        self.part = Some(part_number);
        self
    }
    /// Fire at most `n` times.
    pub fn limit(mut self, n: u64) -> Rule {
        self.limit = Some(n);
        self
    }

    fn applies(&self, req: &RequestInfo) -> bool {
        self.op.matches(req.op)
            && self.key.as_ref().is_none_or(|k| *k == req.key)
            && self.part.is_none_or(|p| req.part_number == Some(p))
    }

    /// Counts the request and says whether the rule fires on it (with the concrete fault).
    fn decide(&mut self) -> Option<Fault> {
        self.seen += 1;
        if self.limit.is_some_and(|l| self.fired >= l) {
            return None;
        }
        let index = self.seen;
        let (fire, draw) = match &self.when {
            When::Always => (true, index),
            When::Nth(n) => (index == *n, index),
            When::Nths(ns) => (ns.contains(&index), index),
            When::Fraction { p, seed } => {
                let h = splitmix64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index);
                let u = (h >> 11) as f64 / (1u64 << 53) as f64;
                (u < *p, splitmix64(h))
            }
        };
        if !fire {
            return None;
        }
        self.fired += 1;
        Some(match &self.fault {
            Fault::OneOf(choices) if !choices.is_empty() => {
                choices[(draw % choices.len() as u64) as usize].clone()
            }
            other => other.clone(),
        })
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How connections are refused during [`FaultProxy::refuse_for_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Refusal {
    /// The listening socket is closed: connecting fails with ECONNREFUSED.
    #[default]
    Closed,
    /// Connections are accepted; each request head is read and recorded (`refused: true`,
    /// with its time, op and part number), then the connection is reset. The client sees a
    /// connection reset instead of a refused connect, and every attempt shows in the records.
    Reset,
}

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct Record {
    /// 0-based, in arrival order.
    pub seq: u64,
    pub op: Op,
    pub method: String,
    /// Object key (percent-decoded), empty for bucket-level requests.
    pub key: String,
    pub upload_id: Option<String>,
    pub part_number: Option<u32>,
    /// Request body bytes read from the client.
    pub body_len: u64,
    /// The fault injected, if any (never `OneOf`: the one picked).
    pub fault: Option<Fault>,
    /// Status sent to the client (injected or Garage's); `None` while pending, or when the
    /// connection was reset / the upstream failed before any answer.
    pub status: Option<u16>,
    /// When the request head arrived.
    pub at: Instant,
    pub finished: bool,
    /// Arrived during a [`Refusal::Reset`] refusal: recorded, then the connection was reset
    /// (no rule was consulted, nothing was forwarded).
    pub refused: bool,
}

impl Record {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

// ---------------------------------------------------------------------------------------------
// The handle
// ---------------------------------------------------------------------------------------------

/// A running proxy (see the module docs). Stopped on drop.
pub struct FaultProxy {
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

struct Shared {
    addr: SocketAddr,
    upstream: SocketAddr,
    stop: AtomicBool,
    state: Mutex<State>,
    /// Clones of every open socket (client and upstream side), to reset them all at once.
    sockets: Mutex<HashMap<u64, TcpStream>>,
    next_socket: AtomicU64,
    /// Serializes listener changes (refuse / re-listen) with accepts.
    listener: Mutex<Option<TcpListener>>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    records: Vec<Record>,
    /// Refusing connections until then (`None`: accepting).
    refuse_until: Option<Instant>,
    refusal: Refusal,
    connections_accepted: u64,
    connections_reset: u64,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 (random port) in front of `upstream`
    /// (`http://HOST:PORT` or `HOST:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let hostport = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        assert!(
            !hostport.contains('/') && !upstream.starts_with("https://"),
            "FaultProxy needs a plain http://HOST:PORT upstream, got {upstream}"
        );
        let upstream_addr = hostport
            .to_socket_addrs()
            .unwrap_or_else(|e| panic!("resolving {hostport}: {e}"))
            .next()
            .unwrap_or_else(|| panic!("{hostport} resolves to nothing"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy listener");
        listener
            .set_nonblocking(true)
            .expect("nonblocking proxy listener");
        let addr = listener.local_addr().expect("proxy listener address");
        let shared = Arc::new(Shared {
            addr,
            upstream: upstream_addr,
            stop: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            sockets: Mutex::new(HashMap::new()),
            next_socket: AtomicU64::new(0),
            listener: Mutex::new(Some(listener)),
        });
        let s = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name("fault-proxy-accept".into())
            .spawn(move || accept_loop(&s))
            .expect("spawning the proxy accept thread");
        FaultProxy {
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// `http://127.0.0.1:PORT`, for `--endpoint-url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.shared.addr)
    }
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Adds a rule: `fault` on the requests of `op` selected by `when`.
    pub fn set_fault(&self, op: Op, when: When, fault: Fault) {
        self.add_rule(Rule::new(op, when, fault));
    }
    /// Adds a rule built with [`Rule::new`] and its filters.
    pub fn add_rule(&self, rule: Rule) {
        self.shared.state().rules.push(rule);
    }
    /// Removes every rule (counters and records stay; a refusal in progress goes on).
    pub fn clear(&self) {
        self.shared.state().rules.clear();
    }
    /// Removes the rules of `op`.
    pub fn clear_op(&self, op: Op) {
        self.shared.state().rules.retain(|r| r.op != op);
    }
    /// Forgets all records (rules stay).
    pub fn reset_counters(&self) {
        self.shared.state().records.clear();
    }

    /// Closes the listener now and resets every open connection; listens again (same port)
    /// after `d`. Returns once the listener is closed.
    pub fn refuse_for(&self, d: Duration) {
        self.refuse_for_with(d, Refusal::Closed);
    }
    /// Like [`FaultProxy::refuse_for`], refusing the way `how` says.
    pub fn refuse_for_with(&self, d: Duration, how: Refusal) {
        {
            let mut state = self.shared.state();
            state.refuse_until = Some(Instant::now() + d);
            state.refusal = how;
        }
        self.shared.drop_connections(how == Refusal::Closed);
    }
    /// Refuses connections until [`FaultProxy::accept`].
    pub fn refuse(&self) {
        self.refuse_for(Duration::from_secs(365 * 24 * 3600));
    }
    /// Ends a refusal now (the listener is back within a few ms).
    pub fn accept(&self) {
        self.shared.state().refuse_until = None;
    }
    /// Whether connections are being refused right now.
    pub fn is_refusing(&self) -> bool {
        self.shared.refusing()
    }
    /// Blocks until the listener accepts again (or `timeout`); true if it does.
    pub fn wait_accepting(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_refusing() && TcpStream::connect(self.shared.addr).is_ok() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Requests of `op` seen so far (injected failures included).
    pub fn count(&self, op: Op) -> u64 {
        self.count_where(|r| op.matches(r.op))
    }
    /// Requests of `op` that got a 2xx answer.
    pub fn successes(&self, op: Op) -> u64 {
        self.count_where(|r| op.matches(r.op) && r.succeeded())
    }
    /// Requests of `op` the proxy made fail itself (error answers and resets).
    pub fn injected_failures(&self, op: Op) -> u64 {
        self.count_where(|r| op.matches(r.op) && r.fault.as_ref().is_some_and(Fault::is_failure))
    }
    /// Requests of `op` that got `fault` (compared with `==`).
    pub fn injected(&self, op: Op, fault: &Fault) -> u64 {
        self.count_where(|r| op.matches(r.op) && r.fault.as_ref() == Some(fault))
    }
    /// UploadPart requests with this part number (all keys, all attempts).
    pub fn part_attempts(&self, part_number: u32) -> u64 {
        self.count_where(|r| r.op == Op::UploadPart && r.part_number == Some(part_number))
    }
    /// UploadPart requests for this key and part number.
    pub fn part_attempts_of(&self, key: &str, part_number: u32) -> u64 {
        self.count_where(|r| {
            r.op == Op::UploadPart && r.part_number == Some(part_number) && r.key == key
        })
    }
    /// Every request seen so far, in arrival order.
    pub fn records(&self) -> Vec<Record> {
        self.shared.state().records.clone()
    }
    /// Records of `op`.
    pub fn records_of(&self, op: Op) -> Vec<Record> {
        self.shared
            .state()
            .records
            .iter()
            .filter(|r| op.matches(r.op))
            .cloned()
            .collect()
    }
    /// Requests still being handled.
    pub fn in_flight(&self) -> u64 {
        self.count_where(|r| !r.finished)
    }
    pub fn connections_accepted(&self) -> u64 {
        self.shared.state().connections_accepted
    }
    /// Connections the proxy reset (faults and refusals).
    pub fn connections_reset(&self) -> u64 {
        self.shared.state().connections_reset
    }
    /// A one-line-per-op summary:
    /// `UploadPart: 159 seen, 140 ok, 19 failed by the proxy, 0 delayed or corrupted`.
    pub fn summary(&self) -> String {
        let state = self.shared.state();
        let mut ops: Vec<Op> = state.records.iter().map(|r| r.op).collect();
        ops.sort();
        ops.dedup();
        let mut out = String::new();
        for op in ops {
            let of = || state.records.iter().filter(move |r| r.op == op);
            let failed = of()
                .filter(|r| r.fault.as_ref().is_some_and(Fault::is_failure))
                .count();
            let other = of().filter(|r| r.fault.is_some()).count() - failed;
            out.push_str(&format!(
                "{op:?}: {} seen, {} ok, {failed} failed by the proxy, {other} delayed or \
                 corrupted\n",
                of().count(),
                of().filter(|r| r.succeeded()).count(),
            ));
        }
        out
    }

    fn count_where(&self, f: impl Fn(&Record) -> bool) -> u64 {
        self.shared.state().records.iter().filter(|r| f(r)).count() as u64
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FaultProxy({} -> {})",
            self.shared.addr, self.shared.upstream
        )
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.close_listener();
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refusing(&self) -> bool {
        self.state()
            .refuse_until
            .is_some_and(|until| Instant::now() < until)
    }

    fn refusal(&self) -> Refusal {
        self.state().refusal
    }

    /// Drops the listener and resets every open connection.
    fn close_listener(&self) {
        self.drop_connections(true);
    }

    /// Resets every open connection, and drops the listener too if `close_listener`.
    fn drop_connections(&self, close_listener: bool) {
        let mut listener = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        if close_listener {
            listener.take();
        }
        let sockets: Vec<TcpStream> = self
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        let n = sockets.len() as u64;
        for s in sockets {
            reset(&s);
        }
        self.state().connections_reset += n;
        drop(listener);
    }

    fn register(&self, s: &TcpStream) -> io::Result<u64> {
        let id = self.next_socket.fetch_add(1, Ordering::SeqCst);
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, s.try_clone()?);
        Ok(id)
    }

    fn unregister(&self, id: u64) {
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    fn start_record(&self, req: &RequestInfo, refused: bool) -> (u64, Option<Fault>) {
        let mut state = self.state();
        let seq = state.records.len() as u64;
        let mut fault = None;
        for rule in state.rules.iter_mut().filter(|_| !refused) {
            if rule.applies(req)
                && let Some(f) = rule.decide()
            {
                fault = Some(f);
                break;
            }
        }
        if trace() {
            eprintln!(
                "fault proxy: #{seq} {} {} -> {:?} key {:?} part {:?} fault {fault:?}{}",
                req.method,
                req.path,
                req.op,
                req.key,
                req.part_number,
                if refused { " (refused)" } else { "" }
            );
        }
        state.records.push(Record {
            seq,
            op: req.op,
            method: req.method.clone(),
            key: req.key.clone(),
            upload_id: req.upload_id.clone(),
            part_number: req.part_number,
            body_len: 0,
            fault: fault.clone(),
            status: None,
            at: Instant::now(),
            finished: false,
            refused,
        });
        (seq, fault)
    }

    fn finish_record(&self, seq: u64, body_len: u64, status: Option<u16>) {
        if trace() {
            eprintln!("fault proxy: #{seq} done: {body_len} body bytes, status {status:?}");
        }
        let mut state = self.state();
        // Records may have been cleared meanwhile (reset_counters).
        if let Some(r) = state.records.get_mut(seq as usize)
            && r.seq == seq
        {
            r.body_len = body_len;
            r.status = status;
            r.finished = true;
        }
    }
}

/// `FAULT_PROXY_TRACE=1`: one line per request on stderr.
fn trace() -> bool {
    std::env::var_os("FAULT_PROXY_TRACE").is_some_and(|v| v == "1")
}

/// SO_LINGER 0 then shutdown: the peer gets an RST, blocked reads here return at once.
fn reset(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = s.shutdown(Shutdown::Both);
}

fn accept_loop(shared: &Arc<Shared>) {
    let mut bind_failures = 0u32;
    while !shared.stop.load(Ordering::SeqCst) {
        let refusing = shared.refusing() && shared.refusal() == Refusal::Closed;
        let accepted = {
            let mut guard = shared.listener.lock().unwrap_or_else(|e| e.into_inner());
            if refusing {
                if guard.is_some() {
                    drop(guard);
                    shared.close_listener();
                }
                None
            } else {
                if guard.is_none() {
                    // std sets SO_REUSEADDR, so the port is free again at once.
                    match TcpListener::bind(shared.addr) {
                        Ok(l) => {
                            l.set_nonblocking(true).expect("nonblocking listener");
                            *guard = Some(l);
                            bind_failures = 0;
                        }
                        Err(e) => {
                            bind_failures += 1;
                            if bind_failures % 200 == 1 {
                                eprintln!("fault proxy: re-listening on {}: {e}", shared.addr);
                            }
                        }
                    }
                }
                guard.as_ref().and_then(|l| l.accept().ok())
            }
        };
        match accepted {
            Some((stream, _)) => {
                shared.state().connections_accepted += 1;
                let s = Arc::clone(shared);
                let _ = thread::Builder::new()
                    .name("fault-proxy-conn".into())
                    .spawn(move || serve_connection(&s, stream));
            }
            None => thread::sleep(ACCEPT_POLL),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1
// ---------------------------------------------------------------------------------------------

/// A buffered reader over a socket that hands out lines and exact byte counts.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            pos: 0,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more from the socket; 0 at EOF.
    fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 32 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + 64 * 1024, 0);
        loop {
            match self.stream.read(&mut self.buf[old..]) {
                Ok(n) => {
                    self.buf.truncate(old + n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        }
    }

    /// The head (up to and including the blank line) as raw bytes; `None` on a clean EOF
    /// before any byte.
    fn read_head(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut scanned: usize = 0;
        loop {
            let avail = self.buffered();
            if let Some(i) = find(&avail[scanned.saturating_sub(3)..], b"\r\n\r\n") {
                let end = scanned.saturating_sub(3) + i + 4;
                let head = avail[..end].to_vec();
                self.pos += end;
                return Ok(Some(head));
            }
            scanned = avail.len();
            if scanned > MAX_HEAD {
                return Err(io::Error::other("HTTP head too long"));
            }
            if self.fill()? == 0 {
                return if self.buffered().is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = find(self.buffered(), b"\r\n") {
                let line = self.buffered()[..i + 2].to_vec();
                self.pos += i + 2;
                return Ok(line);
            }
            if self.buffered().len() > MAX_HEAD {
                return Err(io::Error::other("line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Passes up to `n` bytes to `sink` (as they arrive); returns how many there were.
    fn take(&mut self, n: u64, sink: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<u64> {
        let mut left = n;
        while left > 0 {
            if self.buffered().is_empty() && self.fill()? == 0 {
                break;
            }
            let k = (self.buffered().len() as u64).min(left) as usize;
            sink(&self.buf[self.pos..self.pos + k])?;
            self.pos += k;
            left -= k as u64;
        }
        Ok(n - left)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A parsed head: first line split in three, headers in order.
struct Head {
    raw: Vec<u8>,
    first: [String; 3],
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: Vec<u8>) -> io::Result<Head> {
        let text = String::from_utf8_lossy(&raw).into_owned();
        let mut lines = text.split("\r\n");
        let first_line = lines.next().unwrap_or_default();
        let mut parts = first_line.splitn(3, ' ');
        let first = [
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
        ];
        if first[1].is_empty() {
            return Err(io::Error::other(format!(
                "bad HTTP first line {first_line:?}"
            )));
        }
        let headers = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Ok(Head {
            raw,
            first,
            headers,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn is_chunked(&self) -> bool {
        self.has_token("transfer-encoding", "chunked")
    }

    fn content_length(&self) -> io::Result<Option<u64>> {
        match self.header("content-length") {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| io::Error::other(format!("bad Content-Length {v:?}"))),
        }
    }

    /// Whether the connection ends after this message.
    fn closes(&self, version: &str) -> bool {
        self.has_token("connection", "close")
            || (version == "HTTP/1.0" && !self.has_token("connection", "keep-alive"))
    }
}

/// What the proxy needs to know about a request to classify and filter it.
struct RequestInfo {
    op: Op,
    method: String,
    key: String,
    upload_id: Option<String>,
    part_number: Option<u32>,
    path: String,
}

fn classify(head: &Head) -> RequestInfo {
    let method = head.first[0].to_ascii_uppercase();
    let target = &head.first[1];
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let has = |name: &str| params.iter().any(|(k, _)| k == name);
    // Path-style: /BUCKET/KEY...
    let trimmed = path.trim_start_matches('/');
    let key = trimmed
        .split_once('/')
        .map(|(_, k)| percent_decode(k))
        .unwrap_or_default();
    let upload_id = param("uploadId");
    let part_number = param("partNumber").and_then(|p| p.parse().ok());
    let copy = head.header("x-amz-copy-source").is_some();
    let op = match method.as_str() {
        "PUT" if upload_id.is_some() && part_number.is_some() => {
            if copy {
                Op::UploadPartCopy
            } else {
                Op::UploadPart
            }
        }
        "PUT" if copy => Op::CopyObject,
        "PUT" if !key.is_empty() => Op::PutObject,
        "POST" if has("uploads") => Op::CreateMultipartUpload,
        "POST" if upload_id.is_some() => Op::CompleteMultipartUpload,
        "POST" if has("delete") => Op::DeleteObjects,
        "DELETE" if upload_id.is_some() => Op::AbortMultipartUpload,
        "DELETE" if !key.is_empty() => Op::DeleteObject,
        "GET" if param("list-type").as_deref() == Some("2") => Op::ListObjectsV2,
        "GET" if has("uploads") => Op::ListMultipartUploads,
        "GET" if upload_id.is_some() => Op::ListParts,
        "GET" if key.is_empty() => Op::ListObjects,
        "GET" => Op::GetObject,
        "HEAD" if key.is_empty() => Op::HeadBucket,
        "HEAD" => Op::HeadObject,
        _ => Op::Other,
    };
    RequestInfo {
        op,
        method,
        key,
        upload_id,
        part_number,
        path: path.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request body as read from the client, and how to send it on.
struct Body {
    bytes: Vec<u8>,
    chunked: bool,
    /// Raw bytes read off the wire (framing included).
    wire_len: u64,
}

/// Reads a body. With `reset_after`, stops after that many wire bytes and returns `None`.
fn read_body(conn: &mut Conn, head: &Head, reset_after: Option<u64>) -> io::Result<Option<Body>> {
    let mut budget = reset_after.unwrap_or(u64::MAX);
    if head.is_chunked() {
        let mut bytes = Vec::new();
        let mut wire = 0u64;
        loop {
            let line = conn.read_line()?;
            wire += line.len() as u64;
            let size_text = String::from_utf8_lossy(&line);
            let size_text = size_text.trim().split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| io::Error::other(format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                // Trailers up to the blank line.
                loop {
                    let t = conn.read_line()?;
                    wire += t.len() as u64;
                    if t == b"\r\n" {
                        break;
                    }
                }
                break;
            }
            let want = size.min(budget);
            let got = conn.take(want, &mut |d| {
                bytes.extend_from_slice(d);
                Ok(())
            })?;
            wire += got;
            if got < want {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if want < size {
                return Ok(None);
            }
            budget -= want;
            let crlf = conn.read_line()?;
            wire += crlf.len() as u64;
        }
        if reset_after.is_some() {
            return Ok(None);
        }
        return Ok(Some(Body {
            bytes,
            chunked: true,
            wire_len: wire,
        }));
    }
    let len = head.content_length()?.unwrap_or(0);
    let want = len.min(budget);
    let mut bytes = Vec::with_capacity(want as usize);
    let got = conn.take(want, &mut |d| {
        bytes.extend_from_slice(d);
        Ok(())
    })?;
    if got < want {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if reset_after.is_some() {
        return Ok(None);
    }
    Ok(Some(Body {
        bytes,
        chunked: false,
        wire_len: len,
    }))
}

fn error_response(
    status: u16,
    code: &str,
    message: &str,
    resource: &str,
    seq: u64,
    head_only: bool,
) -> Vec<u8> {
    let reason = match status {
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let request_id = format!("fault-proxy-{seq}");
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message><Resource>{resource}</Resource>\
         <RequestId>{request_id}</RequestId></Error>"
    );
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\nx-amz-request-id: {request_id}\r\n\r\n",
        if head_only { 0 } else { body.len() }
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Serving a connection
// ---------------------------------------------------------------------------------------------

/// The upstream side of one client connection.
struct Upstream {
    conn: Conn,
    id: u64,
    /// No request has gone over it yet (a failure on a reused one is retried once).
    fresh: bool,
}

/// Unregisters its sockets when the connection thread ends, however it ends.
struct Registration<'a> {
    shared: &'a Shared,
    ids: Vec<u64>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        for id in &self.ids {
            self.shared.unregister(*id);
        }
    }
}

fn serve_connection(shared: &Arc<Shared>, client: TcpStream) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_nodelay(true);
    let Ok(client_id) = shared.register(&client) else {
        return;
    };
    let mut registration = Registration {
        shared,
        ids: vec![client_id],
    };
    // A refusal may have started between accept and register.
    if (shared.refusing() && shared.refusal() == Refusal::Closed)
        || shared.stop.load(Ordering::SeqCst)
    {
        reset(&client);
        return;
    }
    let Ok(read_half) = client.try_clone() else {
        return;
    };
    let mut reader = Conn::new(read_half);
    let mut upstream: Option<Upstream> = None;
    while let Ok(Some(raw)) = reader.read_head() {
        let Ok(head) = Head::parse(raw) else {
            break;
        };
        if shared.stop.load(Ordering::SeqCst) {
            reset(&client);
            break;
        }
        let req = classify(&head);
        if shared.refusing() {
            if shared.refusal() == Refusal::Reset {
                let (seq, _) = shared.start_record(&req, true);
                shared.finish_record(seq, 0, None);
            }
            reset(&client);
            shared.state().connections_reset += 1;
            break;
        }
        let (seq, fault) = shared.start_record(&req, false);
        let keep_going = handle_request(
            shared,
            &client,
            &mut reader,
            &mut upstream,
            &mut registration,
            &head,
            &req,
            seq,
            fault,
        );
        if !keep_going {
            break;
        }
    }
    if let Some(up) = upstream.take() {
        let _ = up.conn.stream.shutdown(Shutdown::Both);
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// Handles one request; false when the client connection must end.
#[allow(clippy::too_many_arguments)]
fn handle_request(
    shared: &Shared,
    mut client: &TcpStream,
    reader: &mut Conn,
    upstream: &mut Option<Upstream>,
    registration: &mut Registration<'_>,
    head: &Head,
    req: &RequestInfo,
    seq: u64,
    fault: Option<Fault>,
) -> bool {
    let version = head.first[2].clone();
    let client_closes = head.closes(&version);
    if head.has_token("expect", "100-continue")
        && client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
    {
        shared.finish_record(seq, 0, None);
        return false;
    }
    if let Some(Fault::ResetAfter(k)) = fault {
        let _ = read_body(reader, head, Some(k));
        reset(client);
        shared.finish_record(seq, k, None);
        let mut state = shared.state();
        state.connections_reset += 1;
        return false;
    }
    let mut body = match read_body(reader, head, None) {
        Ok(Some(b)) => b,
        _ => {
            shared.finish_record(seq, 0, None);
            return false;
        }
    };
    let head_only = req.method == "HEAD";
    match &fault {
        Some(Fault::InternalError) | Some(Fault::SlowDown) => {
            let (status, code, message) = if fault == Some(Fault::InternalError) {
                (
                    500,
                    "InternalError",
                    "We encountered an internal error. Please try again. (injected by the fault proxy)",
                )
            } else {
                (
                    503,
                    "SlowDown",
                    "Please reduce your request rate. (injected by the fault proxy)",
                )
            };
            let resp = error_response(status, code, message, &req.path, seq, head_only);
            let ok = client.write_all(&resp).is_ok();
            shared.finish_record(seq, body.wire_len, ok.then_some(status));
            return ok && !client_closes;
        }
        Some(Fault::FlipByte) if !body.bytes.is_empty() => {
            let mid = body.bytes.len() / 2;
            body.bytes[mid] ^= 0xff;
        }
        _ => {}
    }
    let delay = match &fault {
        Some(Fault::Delay(d)) => Some(*d),
        _ => None,
    };
    match forward(
        shared,
        client,
        upstream,
        registration,
        head,
        &body,
        head_only,
        delay,
    ) {
        Ok((status, upstream_gone, relayed_close)) => {
            shared.finish_record(seq, body.wire_len, Some(status));
            if upstream_gone && let Some(up) = upstream.take() {
                shared.unregister(up.id);
            }
            !client_closes && !relayed_close
        }
        Err(_) => {
            shared.finish_record(seq, body.wire_len, None);
            if let Some(up) = upstream.take() {
                shared.unregister(up.id);
            }
            reset(client);
            false
        }
    }
}

fn connect_upstream(shared: &Shared, registration: &mut Registration<'_>) -> io::Result<Upstream> {
    let s = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    s.set_write_timeout(Some(UPSTREAM_TIMEOUT))?;
    let id = shared.register(&s)?;
    registration.ids.push(id);
    Ok(Upstream {
        conn: Conn::new(s),
        id,
        fresh: true,
    })
}

fn send_request(up: &mut Upstream, head: &Head, body: &Body) -> io::Result<()> {
    let mut s = &up.conn.stream;
    s.write_all(&head.raw)?;
    if body.chunked {
        if !body.bytes.is_empty() {
            s.write_all(format!("{:x}\r\n", body.bytes.len()).as_bytes())?;
            s.write_all(&body.bytes)?;
            s.write_all(b"\r\n")?;
        }
        s.write_all(b"0\r\n\r\n")?;
    } else {
        s.write_all(&body.bytes)?;
    }
    s.flush()
}

/// Reads the final response head from upstream (1xx interim answers skipped).
fn read_response_head(up: &mut Upstream) -> io::Result<Head> {
    loop {
        let raw = up
            .conn
            .read_head()?
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let head = Head::parse(raw)?;
        let status: u16 = head.first[1]
            .parse()
            .map_err(|_| io::Error::other("bad status"))?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        return Ok(head);
    }
}

/// Sends the request upstream and relays the answer to the client: (status, the upstream
/// connection is unusable, the client was told the connection ends).
#[allow(clippy::too_many_arguments)]
fn forward(
    shared: &Shared,
    mut client: &TcpStream,
    upstream: &mut Option<Upstream>,
    registration: &mut Registration<'_>,
    head: &Head,
    body: &Body,
    head_only: bool,
    delay: Option<Duration>,
) -> io::Result<(u16, bool, bool)> {
    // Send, and read the response head; a kept-alive upstream connection that turns out
    // closed is replaced once.
    let mut attempt = 0;
    let resp = loop {
        attempt += 1;
        if upstream.is_none() {
            *upstream = Some(connect_upstream(shared, registration)?);
        }
        let up = upstream.as_mut().expect("just set");
        let fresh = up.fresh;
        up.fresh = false;
        let result = match send_request(up, head, body) {
            Ok(()) => read_response_head(up).map(|h| (h, false)),
            // The server may have answered early without reading the whole body (e.g. 404
            // NoSuchUpload) and closed: relay that answer if it arrived.
            Err(e) => read_response_head(up).map(|h| (h, true)).map_err(|_| e),
        };
        match result {
            Ok(h) => break h,
            Err(e) => {
                if let Some(up) = upstream.take() {
                    shared.unregister(up.id);
                }
                if fresh || attempt > 1 || shared.refusing() {
                    return Err(e);
                }
            }
        }
    };
    let (resp, answered_early) = resp;
    let up = upstream.as_mut().expect("response came from it");
    let status: u16 = resp.first[1]
        .parse()
        .map_err(|_| io::Error::other("bad status"))?;
    if let Some(d) = delay {
        thread::sleep(d);
    }
    client.write_all(&resp.raw)?;
    let version = resp.first[0].clone();
    let mut closes = resp.closes(&version);
    let no_body = head_only || status == 204 || status == 304 || (100..200).contains(&status);
    if no_body {
        // nothing
    } else if resp.is_chunked() {
        loop {
            let line = up.conn.read_line()?;
            client.write_all(&line)?;
            let size_text = String::from_utf8_lossy(&line);
            let size_text = size_text.trim().split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| io::Error::other("bad chunk size"))?;
            if size == 0 {
                loop {
                    let t = up.conn.read_line()?;
                    client.write_all(&t)?;
                    if t == b"\r\n" {
                        break;
                    }
                }
                break;
            }
            let got = up.conn.take(size, &mut |d| client.write_all(d))?;
            if got < size {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let crlf = up.conn.read_line()?;
            client.write_all(&crlf)?;
        }
    } else if let Some(len) = resp.content_length()? {
        let got = up.conn.take(len, &mut |d| client.write_all(d))?;
        if got < len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    } else {
        // Delimited by the end of the connection.
        up.conn.take(u64::MAX, &mut |d| client.write_all(d))?;
        closes = true;
    }
    client.flush()?;
    Ok((status, closes || answered_early, closes))
}
