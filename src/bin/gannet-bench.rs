//! gannet-bench: a small, cheap load generator for memcached-compatible
//! servers (gannet and memcached alike), used by `benches/compare.sh`.
//!
//! Why a load generator of our own: on a 2-core machine the client shares
//! the box with the server, so the client's CPU per operation bounds what
//! can be measured. The packaged tools (memcslap, memcaslap) burn most of a
//! core, cannot pipeline deeply, cannot hold a fixed request rate, and do
//! not speak both protocols with a get/set mix. This one:
//!
//! - drives N connections per thread with `mio` (one `epoll` per thread),
//!   writes every request of a wake-up with one `write`, parses replies in
//!   place, and allocates nothing per request (buffers and rings are sized
//!   up front), so with pipelining one core moves several hundred
//!   thousand ops/s;
//! - runs **closed loop** (each connection keeps `--pipeline` requests in
//!   flight) or **open loop** (`--rate`: every connection sends on a fixed
//!   timeline whatever the replies do). In open loop, latency is measured
//!   from the *scheduled* send time, so a server stall is charged to every
//!   request that should have been sent during it (no coordinated
//!   omission). The timeline is kept with a `timerfd` (epoll's timeout has
//!   only millisecond resolution) and a short spin for deadlines under
//!   30 us;
//! - records latency in a log-linear histogram (HdrHistogram's layout:
//!   256 sub-buckets per power of two, under 0.8% error, fixed 35 KB);
//! - checks every reply: hits and misses are counted from the replies
//!   (not assumed), a hit must name a key that was asked for and carry the
//!   value length that was stored, and anything unexpected is counted as
//!   an error; a reply that breaks framing closes that connection (counted)
//!   rather than panicking;
//! - reads the server's CPU time (`/proc/PID/stat`, utime+stime) around
//!   the measured window, because on a shared 2-core box throughput ties
//!   when the client is the bottleneck, while server CPU per operation
//!   still ranks servers;
//! - measures memory: RSS per item after `--prefill`, RSS per idle
//!   connection (`--idle-conns`), and the largest RSS during the run
//!   (relevant for `--pipeline 0`, unbounded pipelining);
//! - speaks TLS with `--tls --tls-ca FILE` (rustls, driven by the same
//!   non-blocking loop: requests go through the session's writer, replies
//!   come out of its reader), so a TLS server (`-Z`) is measured the same
//!   way as a plaintext one.
//!
//! The wire encoding is written here independently of `gannet::protocol`
//! on purpose: a load generator that shared the server's codec would share
//! its bugs too.
//!
//! Output: a human-readable report, or with `--json` one hand-formatted
//! JSON object on one line (numbers, or `null` when not measured).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

// ---------------------------------------------------------------------------
// Command line

/// Wire protocol to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Proto {
    Text,
    Binary,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Text => "text",
            Proto::Binary => "binary",
        }
    }
}

/// An inclusive size range; `"100"` or `"50-500"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SizeRange {
    min: usize,
    max: usize,
}

impl SizeRange {
    fn fixed(&self) -> bool {
        self.min == self.max
    }
    fn show(&self) -> String {
        if self.fixed() {
            self.min.to_string()
        } else {
            format!("{}-{}", self.min, self.max)
        }
    }
}

fn parse_range(s: &str) -> Result<SizeRange, String> {
    let num = |t: &str| {
        t.trim()
            .parse::<usize>()
            .map_err(|e| format!("bad size {t:?}: {e}"))
    };
    let (min, max) = match s.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let v = num(s)?;
            (v, v)
        }
    };
    if min > max {
        return Err(format!("empty range {s:?}"));
    }
    Ok(SizeRange { min, max })
}

/// `get:set`, e.g. `9:1`; returns the fraction of gets.
fn parse_ratio(s: &str) -> Result<f64, String> {
    let (g, st) = s
        .split_once(':')
        .ok_or_else(|| format!("ratio {s:?} is not GET:SET"))?;
    let g: f64 = g.trim().parse().map_err(|_| format!("bad ratio {s:?}"))?;
    let st: f64 = st.trim().parse().map_err(|_| format!("bad ratio {s:?}"))?;
    if !(g >= 0.0 && st >= 0.0 && g + st > 0.0) {
        return Err(format!("bad ratio {s:?}"));
    }
    Ok(g / (g + st))
}

/// Load generator for memcached-compatible servers (text and binary
/// protocols; closed or open loop).
#[derive(Parser, Debug, Clone)]
#[command(name = "gannet-bench", version)]
struct Args {
    /// Server address.
    #[arg(short = 's', long, default_value = "127.0.0.1")]
    host: String,
    /// Server TCP port.
    #[arg(short = 'p', long, default_value_t = 11211)]
    port: u16,
    /// Wire protocol.
    #[arg(long, value_enum, default_value_t = Proto::Text)]
    protocol: Proto,
    /// Active connections in total (spread over --threads).
    #[arg(short = 'c', long, default_value_t = 10)]
    conns: usize,
    /// Client threads (one event loop each).
    #[arg(short = 't', long, default_value_t = 1)]
    threads: usize,
    /// Requests in flight per connection; 0 = unbounded (write as fast as
    /// the socket takes it).
    #[arg(short = 'P', long, default_value_t = 1)]
    pipeline: usize,
    /// Open loop: total requests per second on a fixed timeline (latency
    /// from the scheduled time). 0 = closed loop.
    #[arg(short = 'r', long, default_value_t = 0.0)]
    rate: f64,
    /// get:set ratio.
    #[arg(long, default_value = "9:1", value_parser = parse_ratio)]
    ratio: f64,
    /// Number of distinct keys.
    #[arg(short = 'n', long, default_value_t = 100_000)]
    keys: u32,
    /// Key size in bytes, fixed or MIN-MAX (per key, stable).
    #[arg(long, default_value = "32", value_parser = parse_range)]
    key_size: SizeRange,
    /// Value size in bytes, fixed or MIN-MAX (per set, random).
    #[arg(long, default_value = "100", value_parser = parse_range)]
    value_size: SizeRange,
    /// Zipf exponent for key choice (rank 1 = key 0); uniform if absent.
    #[arg(long)]
    zipf: Option<f64>,
    /// Set every key once before measuring.
    #[arg(long)]
    prefill: bool,
    /// Keys per get request (text: `get k1 k2 ...`; binary: GETKQ... NOOP).
    #[arg(short = 'm', long, default_value_t = 1)]
    multiget: usize,
    /// Cache-aside: every key a get misses is set by a following request.
    #[arg(long)]
    cache_aside: bool,
    /// Seconds to run before measuring.
    #[arg(short = 'w', long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds to measure (0 = only prefill and idle-connection steps).
    #[arg(short = 'd', long, default_value_t = 5.0)]
    duration: f64,
    /// Server process id: report its CPU time per op and its RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Idle connections to open (and check with one request each) before
    /// the run and to hold open during it.
    #[arg(long, default_value_t = 0)]
    idle_conns: usize,
    /// Print one JSON line instead of the report.
    #[arg(long)]
    json: bool,
    /// Random seed.
    #[arg(long, default_value_t = 0x9e37_79b9_7f4a_7c15)]
    seed: u64,
    /// Speak TLS (the server runs with -Z); needs --tls-ca.
    #[arg(long)]
    tls: bool,
    /// PEM file of the CA(s) that signed the server's certificate.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<String>,
    /// Server name to verify the certificate against.
    #[arg(long, default_value = "localhost")]
    tls_name: String,
}

/// Largest key memcached accepts.
const KEY_MAX: usize = 250;
/// Key prefix; the index follows, zero-padded, then `x` padding.
const KEY_PREFIX: &[u8] = b"gb:";
/// Replies of a connection that has not produced a line within this many
/// bytes have lost framing.
const LINE_LIMIT: usize = 1 << 20;
/// Stop filling a connection's output once this much is queued.
const OUT_HIGH: usize = 64 * 1024;
/// Requests in flight per connection during prefill.
const PREFILL_DEPTH: usize = 32;
/// A prefill with no reply for this long is abandoned.
const PREFILL_STALL_NS: u64 = 10_000_000_000;
/// Deadlines closer than this are spun for instead of slept for.
const SPIN_NS: u64 = 30_000;
/// Longest single sleep in the event loop (to notice the end of a phase).
const MAX_SLEEP: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------
// Time, random numbers, key choice

/// CLOCK_MONOTONIC in nanoseconds (the clock `timerfd` uses too).
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// xorshift64* (plenty for load generation, one multiply per number).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed so that nearby seeds diverge.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (multiply-shift, no modulo bias worth noting).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipf(s) over ranks 1..=n by rejection-inversion (Hörmann and
/// Derflinger, 1996): O(1) time and memory per sample, no table, exact for
/// any n. `H` is an antiderivative of `h(x) = x^-s`, written with
/// `expm1`/`ln_1p` so that s near 1 stays accurate.
struct Zipf {
    n: f64,
    s: f64,
    h_x1: f64,
    h_n: f64,
    cut: f64,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Zipf {
        let mut z = Zipf {
            n: n as f64,
            s,
            h_x1: 0.0,
            h_n: 0.0,
            cut: 0.0,
        };
        z.h_x1 = z.big_h(1.5) - 1.0;
        z.h_n = z.big_h(z.n + 0.5);
        z.cut = 2.0 - z.big_h_inv(z.big_h(2.5) - z.h(2.0));
        z
    }
    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }
    /// (x^(1-s) - 1) / (1-s), or ln x when s = 1.
    fn big_h(&self, x: f64) -> f64 {
        let lx = x.ln();
        let t = (1.0 - self.s) * lx;
        let f = if t.abs() > 1e-8 {
            t.exp_m1() / t
        } else {
            1.0 + t / 2.0
        };
        f * lx
    }
    fn big_h_inv(&self, y: f64) -> f64 {
        let t = (1.0 - self.s) * y;
        let f = if t.abs() > 1e-8 {
            t.ln_1p() / t
        } else {
            1.0 - t / 2.0
        };
        (f * y).exp()
    }
    /// A rank in 1..=n.
    fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_n + rng.unit() * (self.h_x1 - self.h_n);
            let x = self.big_h_inv(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.cut || u >= self.big_h(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Latency histogram

/// Sub-buckets per power of two (relative error below 1/128).
const SUB_BITS: u32 = 8;
const SUB: usize = 1 << SUB_BITS;
const HALF: usize = SUB / 2;
/// Largest value kept exactly-bucketed: 2^40 ns (about 18 minutes).
const MAX_EXP: u32 = 40;
const BUCKETS: usize = (MAX_EXP - SUB_BITS + 2) as usize * HALF + HALF;

/// HdrHistogram-style log-linear histogram of nanoseconds, fixed memory.
#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
    fn index(v: u64) -> usize {
        let v = v.min((1u64 << (MAX_EXP + 1)) - 1);
        if v < SUB as u64 {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        let shift = msb + 1 - SUB_BITS;
        shift as usize * HALF + (v >> shift) as usize
    }
    /// Largest value that lands in bucket `i`.
    fn upper(i: usize) -> u64 {
        if i < SUB {
            return i as u64;
        }
        let shift = (i / HALF - 1) as u32;
        let sub = (i - shift as usize * HALF) as u64;
        ((sub + 1) << shift) - 1
    }
    fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }
    fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.total += o.total;
        self.max = self.max.max(o.max);
    }
    /// The value at quantile `q` (0..=1), as its bucket's upper bound.
    fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let want = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Some(Self::upper(i).min(self.max));
            }
        }
        Some(self.max)
    }
}

// ---------------------------------------------------------------------------
// /proc readers

/// utime + stime of a process, in nanoseconds.
fn proc_cpu_ns(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Some(ticks * (1_000_000_000 / hz))
}

/// VmRSS of a process, in bytes.
fn proc_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb = line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(kb * 1024)
}

/// Raise the open-file limit to the hard limit (for --idle-conns).
fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid rlimit; failures leave the limit as it was.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

// ---------------------------------------------------------------------------
// Keys and values

/// Everything every thread needs to know, shared read-only.
struct Plan {
    args: Args,
    addr: SocketAddr,
    /// Digits of the largest key index.
    width: usize,
    value: Vec<u8>,
    /// Nanoseconds between sends on one connection (open loop), else 0.
    interval_ns: u64,
    /// Set by the main thread once prefill and idle connections are done:
    /// the common start of the run.
    t0: AtomicU64,
    barrier: Barrier,
    /// `--tls`: the client configuration every connection shares.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Plan {
    /// Length of key `idx` (stable per key when sizes vary).
    fn key_len(&self, idx: u32) -> usize {
        let r = self.args.key_size;
        if r.fixed() {
            return r.min;
        }
        let mut h = u64::from(idx).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
        r.min + (h % (r.max - r.min + 1) as u64) as usize
    }
    /// Write key `idx` into `buf` (whose first bytes hold the template).
    fn key<'b>(&self, idx: u32, buf: &'b mut [u8; KEY_MAX]) -> &'b [u8] {
        let len = self.key_len(idx);
        let mut n = idx;
        let start = KEY_PREFIX.len();
        for b in buf[start..start + self.width].iter_mut().rev() {
            *b = b'0' + (n % 10) as u8;
            n /= 10;
        }
        &buf[..len]
    }
    fn key_template(&self) -> [u8; KEY_MAX] {
        let mut t = [b'x'; KEY_MAX];
        t[..KEY_PREFIX.len()].copy_from_slice(KEY_PREFIX);
        t
    }
}

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

fn parse_dec(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 19 {
        return None;
    }
    let mut v = 0u64;
    for &b in t {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
    }
    Some(v)
}

// Binary protocol constants (memcached's protocol_binary.h).
const REQ_MAGIC: u8 = 0x80;
const RES_MAGIC: u8 = 0x81;
const OP_GET: u8 = 0x00;
const OP_SET: u8 = 0x01;
const OP_NOOP: u8 = 0x0a;
const OP_GETKQ: u8 = 0x0d;
const ST_OK: u16 = 0;
const ST_NOT_FOUND: u16 = 1;

fn bin_header(out: &mut Vec<u8>, op: u8, key_len: usize, extras: u8, body: usize, opaque: u32) {
    out.push(REQ_MAGIC);
    out.push(op);
    out.extend_from_slice(&(key_len as u16).to_be_bytes());
    out.push(extras);
    out.push(0); // datatype
    out.extend_from_slice(&[0, 0]); // vbucket
    out.extend_from_slice(&(body as u32).to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&[0; 8]); // cas
}

// ---------------------------------------------------------------------------
// Connections

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Get,
    Set,
}

/// One request in flight.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// When it was sent (closed loop) or scheduled (open loop).
    start: u64,
    kind: Kind,
    /// Keys it names (their indices sit in `Conn::keys`).
    nkeys: u16,
}

/// Where the reply parser stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ParseState {
    /// At a text line or a binary header.
    Head,
    /// Skipping a value: `left` bytes, then (text) `\r\n`; then complete
    /// the head request when `complete`.
    Body {
        left: usize,
        crlf: bool,
        complete: bool,
    },
    /// Text: expecting the `\r\n` after a value.
    Crlf { complete: bool },
}

struct Conn {
    sock: TcpStream,
    /// `--tls`: the session over `sock`.
    tls: Option<Box<rustls::ClientConnection>>,
    out: Vec<u8>,
    out_pos: usize,
    inb: Vec<u8>,
    in_start: usize,
    in_end: usize,
    pending: VecDeque<Pending>,
    /// Key indices of the requests in flight, in order.
    keys: VecDeque<u32>,
    /// Cache-aside: keys that missed and are to be set.
    to_set: VecDeque<u32>,
    state: ParseState,
    /// Keys of the head request already accounted for (matched or missed).
    req_ptr: usize,
    req_hits: usize,
    req_err: bool,
    writable: bool,
    dead: bool,
    /// Open loop: scheduled time of the next request.
    sched_next: u64,
}

impl Conn {
    /// `--tls`: hand `out` to the session and send its records until the
    /// socket is full (then wait for a writable event). Err: the
    /// connection is dead.
    fn tls_send(&mut self) -> Result<(), ()> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        if self.out_pos < self.out.len() {
            // rustls takes it all (its buffer is unbounded by default); what
            // is queued is bounded by OUT_HIGH anyway.
            let n = tls
                .writer()
                .write(&self.out[self.out_pos..])
                .map_err(|_| ())?;
            self.out_pos += n;
            if self.out_pos == self.out.len() {
                self.out.clear();
                self.out_pos = 0;
            }
        }
        while tls.wants_write() {
            match tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
        Ok(())
    }

    /// `--tls`: plaintext into `inb[end..]`: what the session already
    /// decrypted, else one read of records from the socket. WouldBlock
    /// only when the socket has nothing more.
    fn tls_read(&mut self, end: usize) -> std::io::Result<usize> {
        loop {
            let Some(tls) = self.tls.as_mut() else {
                return Err(ErrorKind::Unsupported.into());
            };
            match tls.reader().read(&mut self.inb[end..]) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if tls.read_tls(&mut self.sock)? == 0 {
                return Ok(0);
            }
            tls.process_new_packets()
                .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
            // Handshake messages (and requests held until it finished).
            self.writable = true;
            if self.tls_send().is_err() {
                return Err(ErrorKind::BrokenPipe.into());
            }
        }
    }
}

/// Counters of one thread (merged at the end).
#[derive(Clone)]
struct Tally {
    ops: u64,
    gets: u64,
    sets: u64,
    get_keys: u64,
    hits: u64,
    misses: u64,
    errors: u64,
    closed: u64,
    hist: Histogram,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            ops: 0,
            gets: 0,
            sets: 0,
            get_keys: 0,
            hits: 0,
            misses: 0,
            errors: 0,
            closed: 0,
            hist: Histogram::new(),
        }
    }
    fn merge(&mut self, o: &Tally) {
        self.ops += o.ops;
        self.gets += o.gets;
        self.sets += o.sets;
        self.get_keys += o.get_keys;
        self.hits += o.hits;
        self.misses += o.misses;
        self.errors += o.errors;
        self.closed += o.closed;
        self.hist.merge(&o.hist);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Prefill,
    Run,
}

const TIMER: Token = Token(usize::MAX);

/// One client thread: its connections, event loop and counters.
struct Worker {
    plan: Arc<Plan>,
    id: usize,
    poll: Poll,
    timerfd: OwnedFd,
    conns: Vec<Conn>,
    rng: Rng,
    zipf: Option<Zipf>,
    tally: Tally,
    phase: Phase,
    /// Prefill: next key index this thread sets (steps by thread count).
    prefill_next: u64,
    /// Measured window [win_start, win_end).
    win_start: u64,
    win_end: u64,
    keybuf: [u8; KEY_MAX],
    keybuf2: [u8; KEY_MAX],
    /// When a reply last completed a request (to give up on a prefill
    /// that a server stopped answering).
    last_progress: u64,
}

fn io_err(what: &str, e: std::io::Error) -> String {
    format!("{what}: {e}")
}

impl Worker {
    fn new(plan: Arc<Plan>, id: usize, nconns: usize) -> Result<Worker, String> {
        let poll = Poll::new().map_err(|e| io_err("epoll", e))?;
        // SAFETY: plain syscall; the result is checked.
        let timerfd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if timerfd < 0 {
            return Err(io_err("timerfd", std::io::Error::last_os_error()));
        }
        // SAFETY: timerfd_create returned a new descriptor that nothing else owns.
        let timerfd = unsafe { OwnedFd::from_raw_fd(timerfd) };
        poll.registry()
            .register(
                &mut SourceFd(&timerfd.as_raw_fd()),
                TIMER,
                Interest::READABLE,
            )
            .map_err(|e| io_err("register timerfd", e))?;
        let a = &plan.args;
        let depth = if a.pipeline == 0 {
            4096
        } else {
            a.pipeline.max(PREFILL_DEPTH)
        };
        let mut conns = Vec::with_capacity(nconns);
        for i in 0..nconns {
            let std = StdTcpStream::connect_timeout(&plan.addr, Duration::from_secs(5))
                .map_err(|e| io_err(&format!("connect {}", plan.addr), e))?;
            std.set_nodelay(true).map_err(|e| io_err("nodelay", e))?;
            std.set_nonblocking(true)
                .map_err(|e| io_err("nonblocking", e))?;
            let mut sock = TcpStream::from_std(std);
            let tls = match &plan.tls {
                Some(cfg) => {
                    let name = rustls::pki_types::ServerName::try_from(a.tls_name.clone())
                        .map_err(|e| format!("--tls-name: {e}"))?;
                    let c = rustls::ClientConnection::new(Arc::clone(cfg), name)
                        .map_err(|e| format!("TLS session: {e}"))?;
                    Some(Box::new(c))
                }
                None => None,
            };
            poll.registry()
                .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
                .map_err(|e| io_err("register", e))?;
            let multi = a.multiget.max(1);
            conns.push(Conn {
                sock,
                tls,
                out: Vec::with_capacity(OUT_HIGH + 2 * (a.value_size.max + 300 * multi)),
                out_pos: 0,
                inb: vec![0; 256 * 1024],
                in_start: 0,
                in_end: 0,
                pending: VecDeque::with_capacity(depth),
                keys: VecDeque::with_capacity(depth * multi),
                to_set: VecDeque::with_capacity(if a.cache_aside { depth * multi } else { 0 }),
                state: ParseState::Head,
                req_ptr: 0,
                req_hits: 0,
                req_err: false,
                writable: true,
                dead: false,
                sched_next: 0,
            });
        }
        let zipf = a.zipf.map(|s| Zipf::new(u64::from(a.keys), s));
        let keybuf = plan.key_template();
        let rng = Rng::new(a.seed ^ (id as u64).wrapping_mul(0x1234_5678_9abc_def1));
        Ok(Worker {
            id,
            poll,
            timerfd,
            conns,
            rng,
            zipf,
            tally: Tally::new(),
            phase: Phase::Prefill,
            prefill_next: id as u64,
            win_start: 0,
            win_end: 0,
            keybuf,
            keybuf2: keybuf,
            last_progress: now_ns(),
            plan,
        })
    }

    fn pick_key(&mut self) -> u32 {
        match &self.zipf {
            Some(z) => (z.sample(&mut self.rng) - 1) as u32,
            None => self.rng.below(u64::from(self.plan.args.keys)) as u32,
        }
    }

    fn value_len(&mut self) -> usize {
        let r = self.plan.args.value_size;
        if r.fixed() {
            r.min
        } else {
            r.min + self.rng.below((r.max - r.min + 1) as u64) as usize
        }
    }

    /// Append one request to connection `ci`; false when there is none to
    /// send (prefill finished).
    fn encode_next(&mut self, ci: usize, start: u64) -> bool {
        let plan = Arc::clone(&self.plan);
        let a = &plan.args;
        let (kind, first) = match self.phase {
            Phase::Prefill => {
                if self.prefill_next >= u64::from(a.keys) {
                    return false;
                }
                let k = self.prefill_next as u32;
                self.prefill_next += a.threads as u64;
                (Kind::Set, k)
            }
            Phase::Run => {
                if let Some(k) = self.conns[ci].to_set.pop_front() {
                    (Kind::Set, k)
                } else if self.rng.unit() < a.ratio {
                    let k = self.pick_key();
                    (Kind::Get, k)
                } else {
                    let k = self.pick_key();
                    (Kind::Set, k)
                }
            }
        };
        let nkeys = if kind == Kind::Get {
            a.multiget.max(1)
        } else {
            1
        };
        let vlen = if kind == Kind::Set {
            self.value_len()
        } else {
            0
        };
        let c = &mut self.conns[ci];
        let key = plan.key(first, &mut self.keybuf);
        match (a.protocol, kind) {
            (Proto::Text, Kind::Set) => {
                c.out.extend_from_slice(b"set ");
                c.out.extend_from_slice(key);
                c.out.extend_from_slice(b" 0 0 ");
                push_u64(&mut c.out, vlen as u64);
                c.out.extend_from_slice(b"\r\n");
                c.out.extend_from_slice(&plan.value[..vlen]);
                c.out.extend_from_slice(b"\r\n");
            }
            (Proto::Binary, Kind::Set) => {
                bin_header(&mut c.out, OP_SET, key.len(), 8, 8 + key.len() + vlen, 0);
                c.out.extend_from_slice(&[0; 8]); // flags, exptime
                c.out.extend_from_slice(key);
                c.out.extend_from_slice(&plan.value[..vlen]);
            }
            (Proto::Text, Kind::Get) => {
                c.out.extend_from_slice(b"get ");
                c.out.extend_from_slice(key);
            }
            (Proto::Binary, Kind::Get) => {
                let op = if nkeys > 1 { OP_GETKQ } else { OP_GET };
                bin_header(&mut c.out, op, key.len(), 0, key.len(), 0);
                c.out.extend_from_slice(key);
            }
        }
        c.keys.push_back(first);
        if kind == Kind::Get {
            for j in 1..nkeys {
                let k = match &self.zipf {
                    Some(z) => (z.sample(&mut self.rng) - 1) as u32,
                    None => self.rng.below(u64::from(a.keys)) as u32,
                };
                let c = &mut self.conns[ci];
                let key = plan.key(k, &mut self.keybuf);
                match a.protocol {
                    Proto::Text => {
                        c.out.push(b' ');
                        c.out.extend_from_slice(key);
                    }
                    Proto::Binary => {
                        bin_header(&mut c.out, OP_GETKQ, key.len(), 0, key.len(), j as u32);
                        c.out.extend_from_slice(key);
                    }
                }
                c.keys.push_back(k);
            }
            let c = &mut self.conns[ci];
            match a.protocol {
                Proto::Text => c.out.extend_from_slice(b"\r\n"),
                Proto::Binary if nkeys > 1 => bin_header(&mut c.out, OP_NOOP, 0, 0, 0, 0),
                Proto::Binary => {}
            }
        }
        self.conns[ci].pending.push_back(Pending {
            start,
            kind,
            nkeys: nkeys as u16,
        });
        true
    }

    /// Queue what connection `ci` may send now and write it. Returns
    /// whether it could take more right away (unbounded pipelining), and
    /// lowers `next_due` to its next scheduled send.
    fn pump(&mut self, ci: usize, now: u64, next_due: &mut u64) -> bool {
        if self.conns[ci].dead {
            return false;
        }
        let a = &self.plan.args;
        let cap = match (self.phase, a.pipeline) {
            (Phase::Prefill, _) => PREFILL_DEPTH,
            (Phase::Run, 0) => usize::MAX,
            (Phase::Run, p) => p,
        };
        let open = self.phase == Phase::Run && self.plan.interval_ns > 0;
        let interval = self.plan.interval_ns;
        let mut exhausted = false;
        loop {
            let c = &self.conns[ci];
            if c.out.len() - c.out_pos >= OUT_HIGH || c.pending.len() >= cap {
                break;
            }
            let start = if open {
                if c.sched_next > now {
                    *next_due = (*next_due).min(c.sched_next);
                    break;
                }
                c.sched_next
            } else {
                now
            };
            if !self.encode_next(ci, start) {
                exhausted = true;
                break;
            }
            if open {
                self.conns[ci].sched_next += interval;
            }
        }
        self.flush(ci);
        let c = &self.conns[ci];
        !exhausted && cap == usize::MAX && c.writable && !c.dead && c.out.is_empty()
    }

    fn flush(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        if c.tls.is_some() && c.writable {
            if let Err(()) = c.tls_send() {
                self.kill(ci);
            }
            return;
        }
        while c.writable && c.out_pos < c.out.len() {
            match c.sock.write(&c.out[c.out_pos..]) {
                Ok(0) => {
                    c.writable = false;
                }
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.kill(ci);
                    return;
                }
            }
        }
        let c = &mut self.conns[ci];
        if c.out_pos == c.out.len() {
            c.out.clear();
            c.out_pos = 0;
        }
    }

    /// Connection `ci` is unusable (closed by the server, or its replies
    /// lost framing): count it and stop using it.
    fn kill(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        if !c.dead {
            c.dead = true;
            let _ = self.poll.registry().deregister(&mut c.sock);
            self.tally.closed += 1;
            self.tally.errors += 1;
        }
    }

    fn read(&mut self, ci: usize) {
        loop {
            let c = &mut self.conns[ci];
            if c.dead {
                return;
            }
            if c.in_start == c.in_end {
                c.in_start = 0;
                c.in_end = 0;
            } else if c.in_end == c.inb.len() {
                if c.in_start > 0 {
                    c.inb.copy_within(c.in_start..c.in_end, 0);
                    c.in_end -= c.in_start;
                    c.in_start = 0;
                } else if c.inb.len() < LINE_LIMIT {
                    let n = c.inb.len() * 2;
                    c.inb.resize(n, 0);
                } else {
                    self.kill(ci);
                    return;
                }
            }
            let c = &mut self.conns[ci];
            let end = c.in_end;
            let tls = c.tls.is_some();
            let got = if tls {
                c.tls_read(end)
            } else {
                c.sock.read(&mut c.inb[end..])
            };
            match got {
                Ok(0) => {
                    self.kill(ci);
                    return;
                }
                Ok(n) => {
                    let space = c.inb.len() - end;
                    c.in_end += n;
                    let now = now_ns();
                    match self.plan.args.protocol {
                        Proto::Text => self.parse_text(ci, now),
                        Proto::Binary => self.parse_binary(ci, now),
                    }
                    // A short read drained the socket; data that arrives
                    // later raises a new edge in epoll, so the read that
                    // would only say EAGAIN is skipped (a third of the
                    // client's system calls at pipeline depth 1).
                    // (With TLS, rustls may hold decrypted bytes or the
                    // socket more records: read on until WouldBlock.)
                    if n < space && !tls {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.kill(ci);
                    return;
                }
            }
        }
    }

    /// Skip value bytes; returns false when more input is needed.
    fn skip_body(&mut self, ci: usize, now: u64) -> bool {
        let c = &mut self.conns[ci];
        loop {
            match c.state {
                ParseState::Head => return true,
                ParseState::Body {
                    left,
                    crlf,
                    complete,
                } => {
                    let take = left.min(c.in_end - c.in_start);
                    c.in_start += take;
                    if take < left {
                        c.state = ParseState::Body {
                            left: left - take,
                            crlf,
                            complete,
                        };
                        return false;
                    }
                    if crlf {
                        c.state = ParseState::Crlf { complete };
                    } else {
                        c.state = ParseState::Head;
                        if complete {
                            self.complete(ci, now);
                        }
                        return true;
                    }
                }
                ParseState::Crlf { complete } => {
                    if c.in_end - c.in_start < 2 {
                        return false;
                    }
                    let ok = &c.inb[c.in_start..c.in_start + 2] == b"\r\n";
                    c.in_start += 2;
                    c.state = ParseState::Head;
                    if !ok {
                        self.kill(ci);
                        return false;
                    }
                    if complete {
                        self.complete(ci, now);
                    }
                    return true;
                }
            }
        }
    }

    fn parse_text(&mut self, ci: usize, now: u64) {
        loop {
            if !self.skip_body(ci, now) || self.conns[ci].dead {
                return;
            }
            let c = &self.conns[ci];
            let buf = &c.inb[c.in_start..c.in_end];
            let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                return;
            };
            let Some(head) = c.pending.front().copied() else {
                // A reply nobody asked for: framing is lost.
                self.kill(ci);
                return;
            };
            let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            let line_start = c.in_start;
            let consumed = nl + 1;
            let line = line_start..line_start + line_end;
            self.conns[ci].in_start += consumed;
            match head.kind {
                Kind::Set => {
                    if &self.conns[ci].inb[line] != b"STORED" {
                        self.conns[ci].req_err = true;
                    }
                    self.complete(ci, now);
                }
                Kind::Get => {
                    let l = &self.conns[ci].inb[line.clone()];
                    if l == b"END" {
                        self.complete(ci, now);
                    } else if l.starts_with(b"VALUE ") {
                        // VALUE <key> <flags> <bytes> [<cas>]
                        let mut it = l[6..].split(|&b| b == b' ').filter(|t| !t.is_empty());
                        let key = it.next();
                        let _flags = it.next();
                        let bytes = it.next().and_then(parse_dec);
                        let (Some(key), Some(bytes)) = (key, bytes) else {
                            self.kill(ci);
                            return;
                        };
                        let (kstart, klen) =
                            (key.as_ptr() as usize - l.as_ptr() as usize, key.len());
                        self.value_hit(ci, head, line.start + kstart, klen, bytes as usize);
                        self.conns[ci].state = ParseState::Body {
                            left: bytes as usize,
                            crlf: true,
                            complete: false,
                        };
                    } else {
                        // ERROR, SERVER_ERROR ...: this request's answer.
                        self.conns[ci].req_err = true;
                        self.complete(ci, now);
                    }
                }
            }
        }
    }

    /// A hit on the key at `inb[kpos..kpos+klen]` (text) for the head get:
    /// match it against the keys asked for, in order; keys skipped over
    /// missed.
    fn value_hit(&mut self, ci: usize, head: Pending, kpos: usize, klen: usize, vlen: usize) {
        let plan = Arc::clone(&self.plan);
        let n = usize::from(head.nkeys);
        loop {
            let c = &self.conns[ci];
            if c.req_ptr >= n {
                // Not a key we asked for (or one too many).
                self.conns[ci].req_err = true;
                return;
            }
            let idx = c.keys[c.req_ptr];
            let want = plan.key(idx, &mut self.keybuf2);
            let c = &mut self.conns[ci];
            c.req_ptr += 1;
            if want == &c.inb[kpos..kpos + klen] {
                c.req_hits += 1;
                if plan.args.value_size.fixed() && vlen != plan.args.value_size.min {
                    c.req_err = true;
                }
                return;
            }
            if plan.args.cache_aside && self.phase == Phase::Run {
                c.to_set.push_back(idx);
            }
        }
    }

    fn parse_binary(&mut self, ci: usize, now: u64) {
        let plan = Arc::clone(&self.plan);
        loop {
            if !self.skip_body(ci, now) || self.conns[ci].dead {
                return;
            }
            let c = &mut self.conns[ci];
            if c.in_end - c.in_start < 24 {
                return;
            }
            let h = &c.inb[c.in_start..c.in_start + 24];
            let magic = h[0];
            let op = h[1];
            let key_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let ext_len = usize::from(h[4]);
            let status = u16::from_be_bytes([h[6], h[7]]);
            let body = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
            let opaque = u32::from_be_bytes([h[12], h[13], h[14], h[15]]) as usize;
            c.in_start += 24;
            let Some(head) = c.pending.front().copied() else {
                self.kill(ci);
                return;
            };
            if magic != RES_MAGIC || key_len + ext_len > body {
                self.kill(ci);
                return;
            }
            let vlen = body - key_len - ext_len;
            let fixed = plan.args.value_size.fixed();
            let mut complete = true;
            match head.kind {
                Kind::Set => {
                    if op != OP_SET || status != ST_OK {
                        c.req_err = true;
                    }
                }
                Kind::Get if head.nkeys <= 1 => {
                    if op != OP_GET {
                        c.req_err = true;
                    } else if status == ST_OK {
                        c.req_hits += 1;
                        c.req_ptr = 1;
                        if fixed && vlen != plan.args.value_size.min {
                            c.req_err = true;
                        }
                    } else if status != ST_NOT_FOUND {
                        c.req_err = true;
                    }
                }
                Kind::Get => {
                    if op == OP_NOOP {
                        // End of the multi-get.
                    } else if op == OP_GETKQ && status == ST_OK {
                        complete = false;
                        let n = usize::from(head.nkeys);
                        if opaque < c.req_ptr || opaque >= n {
                            c.req_err = true;
                        } else {
                            // Keys between the last hit and this one missed.
                            while c.req_ptr < opaque {
                                let idx = c.keys[c.req_ptr];
                                c.req_ptr += 1;
                                if plan.args.cache_aside && self.phase == Phase::Run {
                                    c.to_set.push_back(idx);
                                }
                            }
                            c.req_ptr += 1;
                            c.req_hits += 1;
                            if fixed && vlen != plan.args.value_size.min {
                                c.req_err = true;
                            }
                        }
                    } else {
                        complete = false;
                        c.req_err = true;
                    }
                }
            }
            c.state = ParseState::Body {
                left: body,
                crlf: false,
                complete,
            };
        }
    }

    /// The head request of connection `ci` got its whole reply.
    fn complete(&mut self, ci: usize, now: u64) {
        let cache_aside = self.plan.args.cache_aside && self.phase == Phase::Run;
        let in_window = self.phase == Phase::Run && now >= self.win_start && now < self.win_end;
        let c = &mut self.conns[ci];
        self.last_progress = now;
        let Some(p) = c.pending.pop_front() else {
            return;
        };
        let n = usize::from(p.nkeys);
        for i in 0..n {
            let Some(idx) = c.keys.pop_front() else {
                break;
            };
            if i >= c.req_ptr && p.kind == Kind::Get && cache_aside {
                c.to_set.push_back(idx);
            }
        }
        let hits = c.req_hits as u64;
        let err = c.req_err;
        c.req_ptr = 0;
        c.req_hits = 0;
        c.req_err = false;
        if err {
            self.tally.errors += 1;
        }
        if !in_window {
            return;
        }
        let t = &mut self.tally;
        t.ops += 1;
        t.hist.record(now.saturating_sub(p.start));
        match p.kind {
            Kind::Set => t.sets += 1,
            Kind::Get => {
                t.gets += 1;
                t.get_keys += n as u64;
                t.hits += hits;
                t.misses += n as u64 - hits.min(n as u64);
            }
        }
    }

    fn arm_timer(&self, deadline: u64) {
        let ts = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (deadline / 1_000_000_000) as libc::time_t,
                tv_nsec: (deadline % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: valid fd and itimerspec; failure only loses precision.
        unsafe {
            libc::timerfd_settime(
                self.timerfd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
    }

    fn drain_timer(&self) {
        let mut b = [0u8; 8];
        // SAFETY: reads at most 8 bytes into b; the fd is non-blocking.
        unsafe { libc::read(self.timerfd.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
    }

    /// Run one phase: prefill until every key is set, or the run until
    /// `win_end`.
    fn run_phase(&mut self, phase: Phase) {
        self.phase = phase;
        self.last_progress = now_ns();
        let mut events = Events::with_capacity(1024);
        loop {
            let now = now_ns();
            match phase {
                Phase::Run if now >= self.win_end => return,
                Phase::Prefill
                    if self.prefill_next >= u64::from(self.plan.args.keys)
                        && self.conns.iter().all(|c| c.dead || c.pending.is_empty()) =>
                {
                    return
                }
                _ => {}
            }
            if self.conns.iter().all(|c| c.dead) {
                return;
            }
            if phase == Phase::Prefill && now.saturating_sub(self.last_progress) > PREFILL_STALL_NS
            {
                // The server stopped answering: drop the connections
                // (counted as errors) rather than wait forever.
                eprintln!("gannet-bench: prefill stalled; giving up on its connections");
                for ci in 0..self.conns.len() {
                    self.kill(ci);
                }
                return;
            }
            let mut next_due = u64::MAX;
            let mut busy = false;
            for ci in 0..self.conns.len() {
                busy |= self.pump(ci, now, &mut next_due);
            }
            let timeout = if busy {
                Duration::ZERO
            } else if next_due != u64::MAX {
                let now = now_ns();
                if next_due <= now + SPIN_NS {
                    Duration::ZERO
                } else {
                    self.arm_timer(next_due.min(self.win_end));
                    MAX_SLEEP
                }
            } else {
                MAX_SLEEP
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    eprintln!("gannet-bench: epoll: {e}");
                    return;
                }
            }
            for ev in events.iter() {
                if ev.token() == TIMER {
                    self.drain_timer();
                    continue;
                }
                let ci = ev.token().0;
                if ci >= self.conns.len() {
                    continue;
                }
                if ev.is_writable() {
                    self.conns[ci].writable = true;
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.read(ci);
                }
            }
        }
    }

    /// The whole life of a thread: prefill, meet the others, run.
    fn main(mut self) -> Tally {
        let plan = Arc::clone(&self.plan);
        if plan.args.prefill {
            self.run_phase(Phase::Prefill);
        }
        // Prefill errors count; prefill completions do not.
        plan.barrier.wait(); // prefill done
        plan.barrier.wait(); // main set t0
        let t0 = plan.t0.load(Ordering::SeqCst);
        self.win_start = t0 + (plan.args.warmup * 1e9) as u64;
        self.win_end = self.win_start + (plan.args.duration * 1e9) as u64;
        if plan.args.duration > 0.0 {
            let total = plan.args.conns.max(1) as u64;
            let nthreads = plan.args.threads as u64;
            for (i, c) in self.conns.iter_mut().enumerate() {
                // Stagger the connections' timelines evenly.
                let global = i as u64 * nthreads + self.id as u64;
                c.sched_next = t0 + plan.interval_ns * global / total;
            }
            self.run_phase(Phase::Run);
        }
        self.tally
    }
}

/// `--tls`: trust the CAs in `ca_file`, no client certificate.
fn tls_config(ca_file: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("--tls-ca {ca_file}: {e}"))?
    {
        let cert = cert.map_err(|e| format!("--tls-ca {ca_file}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("--tls-ca {ca_file}: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

// ---------------------------------------------------------------------------
// Idle connections

/// Open `n` connections and have each answer one request, in batches (so
/// the server's listen backlog never overflows). Returns the sockets and
/// the seconds it took, or an error message.
fn open_idle(plan: &Plan, n: usize) -> Result<(Vec<StdTcpStream>, f64), String> {
    const BATCH: usize = 256;
    let t = now_ns();
    let mut all: Vec<StdTcpStream> = Vec::with_capacity(n);
    let mut req = Vec::new();
    match plan.args.protocol {
        Proto::Text => req.extend_from_slice(b"version\r\n"),
        Proto::Binary => bin_header(&mut req, OP_NOOP, 0, 0, 0, 0),
    }
    while all.len() < n {
        let first = all.len();
        for _ in 0..BATCH.min(n - first) {
            let s = StdTcpStream::connect_timeout(&plan.addr, Duration::from_secs(10))
                .map_err(|e| io_err(&format!("idle connection {}", all.len()), e))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| io_err("timeout", e))?;
            all.push(s);
        }
        for s in &mut all[first..] {
            s.write_all(&req).map_err(|e| io_err("idle write", e))?;
        }
        for s in &mut all[first..] {
            let mut buf = [0u8; 256];
            let mut got = 0;
            let ok = loop {
                let r = s
                    .read(&mut buf[got..])
                    .map_err(|e| io_err("idle read", e))?;
                if r == 0 {
                    break false;
                }
                got += r;
                match plan.args.protocol {
                    Proto::Text if buf[..got].ends_with(b"\r\n") => {
                        break buf.starts_with(b"VERSION ")
                    }
                    Proto::Binary if got >= 24 => break buf[0] == RES_MAGIC,
                    _ if got == buf.len() => break false,
                    _ => {}
                }
            };
            if !ok {
                return Err("idle connection: unexpected reply".into());
            }
        }
    }
    Ok((all, (now_ns() - t) as f64 / 1e9))
}

// ---------------------------------------------------------------------------
// Report

/// Everything measured, for both output formats.
struct Report {
    tally: Tally,
    secs: f64,
    cpu_ns: Option<u64>,
    rss_start: Option<u64>,
    rss_after_prefill: Option<u64>,
    rss_max: Option<u64>,
    idle_secs: Option<f64>,
    rss_after_idle: Option<u64>,
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_string(), |v| v.to_string())
}

impl Report {
    fn ops_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.tally.ops as f64 / self.secs
        } else {
            0.0
        }
    }
    fn pct_us(&self, q: f64) -> Option<f64> {
        self.tally.hist.quantile(q).map(|ns| ns as f64 / 1000.0)
    }
    fn cpu_us_per_op(&self) -> Option<f64> {
        match self.cpu_ns {
            Some(ns) if self.tally.ops > 0 => Some(ns as f64 / 1000.0 / self.tally.ops as f64),
            _ => None,
        }
    }
    fn hit_ratio(&self) -> Option<f64> {
        let t = &self.tally;
        (t.hits + t.misses > 0).then(|| t.hits as f64 / (t.hits + t.misses) as f64)
    }
    fn bytes_per_item(&self, a: &Args) -> Option<f64> {
        match (self.rss_start, self.rss_after_prefill) {
            (Some(b), Some(e)) if a.prefill && a.keys > 0 => {
                Some((e as f64 - b as f64) / f64::from(a.keys))
            }
            _ => None,
        }
    }
    fn bytes_per_idle(&self, a: &Args) -> Option<f64> {
        match (self.rss_after_prefill, self.rss_after_idle) {
            (Some(b), Some(e)) if a.idle_conns > 0 => {
                Some((e as f64 - b as f64) / a.idle_conns as f64)
            }
            _ => None,
        }
    }

    fn json(&self, a: &Args) -> String {
        let t = &self.tally;
        let f1 = |v: Option<f64>| opt(v.map(|x| format!("{x:.1}")));
        let f3 = |v: Option<f64>| opt(v.map(|x| format!("{x:.3}")));
        let f4 = |v: Option<f64>| opt(v.map(|x| format!("{x:.4}")));
        format!(
            concat!(
                "{{\"protocol\":\"{}\",\"conns\":{},\"threads\":{},\"pipeline\":{},",
                "\"rate\":{},\"get_fraction\":{:.3},\"keys\":{},\"key_size\":\"{}\",",
                "\"value_size\":\"{}\",\"zipf\":{},\"multiget\":{},\"cache_aside\":{},",
                "\"seconds\":{:.3},\"ops\":{},\"ops_per_sec\":{:.0},\"gets\":{},",
                "\"sets\":{},\"get_keys\":{},\"hits\":{},\"misses\":{},\"hit_ratio\":{},",
                "\"errors\":{},\"closed\":{},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},",
                "\"p999_us\":{},\"p9999_us\":{},\"max_us\":{},\"server_cpu_us_per_op\":{},",
                "\"rss_start\":{},\"rss_after_prefill\":{},\"rss_bytes_per_item\":{},",
                "\"idle_conns\":{},\"idle_connect_s\":{},\"rss_bytes_per_idle_conn\":{},",
                "\"rss_max\":{}}}"
            ),
            a.protocol.name(),
            a.conns,
            a.threads,
            a.pipeline,
            a.rate,
            a.ratio,
            a.keys,
            a.key_size.show(),
            a.value_size.show(),
            opt(a.zipf),
            a.multiget,
            a.cache_aside,
            self.secs,
            t.ops,
            self.ops_per_sec(),
            t.gets,
            t.sets,
            t.get_keys,
            t.hits,
            t.misses,
            f4(self.hit_ratio()),
            t.errors,
            t.closed,
            f1(self.pct_us(0.5)),
            f1(self.pct_us(0.9)),
            f1(self.pct_us(0.99)),
            f1(self.pct_us(0.999)),
            f1(self.pct_us(0.9999)),
            f1((t.hist.total > 0).then(|| t.hist.max as f64 / 1000.0)),
            f3(self.cpu_us_per_op()),
            opt(self.rss_start),
            opt(self.rss_after_prefill),
            f1(self.bytes_per_item(a)),
            a.idle_conns,
            f3(self.idle_secs),
            f1(self.bytes_per_idle(a)),
            opt(self.rss_max),
        )
    }

    fn human(&self, a: &Args) -> String {
        let t = &self.tally;
        let mut s = String::new();
        let mode = if a.rate > 0.0 {
            format!("open loop at {:.0} ops/s", a.rate)
        } else {
            "closed loop".to_string()
        };
        let pipe = if a.pipeline == 0 {
            "unbounded".to_string()
        } else {
            a.pipeline.to_string()
        };
        let dist = a
            .zipf
            .map_or_else(|| "uniform".to_string(), |z| format!("zipf {z}"));
        s += &format!(
            "gannet-bench: {} protocol, {} conns x pipeline {}, {} thread(s), {}\n",
            a.protocol.name(),
            a.conns,
            pipe,
            a.threads,
            mode
        );
        s += &format!(
            "  workload: {:.0}% get (x{} keys), {} keys {}, key {} B, value {} B{}{}\n",
            a.ratio * 100.0,
            a.multiget.max(1),
            a.keys,
            dist,
            a.key_size.show(),
            a.value_size.show(),
            if a.prefill { ", prefilled" } else { "" },
            if a.cache_aside { ", cache-aside" } else { "" }
        );
        s += &format!("  measured     {:.2} s\n", self.secs);
        s += &format!(
            "  requests     {} ({:.0} ops/s; {} gets, {} sets)\n",
            t.ops,
            self.ops_per_sec(),
            t.gets,
            t.sets
        );
        s += &format!(
            "  get keys     {} ({} hits, {} misses, hit ratio {})\n",
            t.get_keys,
            t.hits,
            t.misses,
            opt(self.hit_ratio().map(|r| format!("{r:.4}")))
        );
        s += &format!(
            "  errors       {} ({} connections lost)\n",
            t.errors, t.closed
        );
        let p = |q| opt(self.pct_us(q).map(|v| format!("{v:.1}")));
        s += &format!(
            "  latency us   p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}\n",
            p(0.5),
            p(0.9),
            p(0.99),
            p(0.999),
            p(0.9999),
            opt((t.hist.total > 0).then(|| format!("{:.1}", t.hist.max as f64 / 1000.0)))
        );
        if let Some(c) = self.cpu_us_per_op() {
            s += &format!("  server CPU   {c:.3} us/op\n");
        }
        if let Some(b) = self.bytes_per_item(a) {
            s += &format!("  server RSS   {b:.1} bytes/item after prefill\n");
        }
        if let Some(secs) = self.idle_secs {
            s += &format!(
                "  idle conns   {} opened and answered in {:.3} s; {} bytes RSS each\n",
                a.idle_conns,
                secs,
                opt(self.bytes_per_idle(a).map(|v| format!("{v:.0}")))
            );
        }
        if let Some(m) = self.rss_max {
            s += &format!("  server RSS   max {} KiB during the run\n", m / 1024);
        }
        s
    }
}

// ---------------------------------------------------------------------------

fn run(a: Args) -> Result<Report, String> {
    if a.conns == 0 || a.threads == 0 {
        return Err("--conns and --threads must be at least 1".into());
    }
    if a.threads > a.conns {
        return Err("--threads must not exceed --conns".into());
    }
    if a.keys == 0 {
        return Err("--keys must be at least 1".into());
    }
    let width = (a.keys - 1).to_string().len();
    if a.key_size.min < KEY_PREFIX.len() + width || a.key_size.max > KEY_MAX {
        return Err(format!(
            "key size must be {}..={KEY_MAX} for {} keys",
            KEY_PREFIX.len() + width,
            a.keys
        ));
    }
    if a.multiget == 0 || a.multiget > 1000 {
        return Err("--multiget must be 1..=1000".into());
    }
    if let Some(z) = a.zipf {
        if !(z > 0.0 && z.is_finite()) {
            return Err("--zipf must be positive".into());
        }
    }
    if !(a.rate >= 0.0 && a.warmup >= 0.0 && a.duration >= 0.0) {
        return Err("--rate, --warmup and --duration must not be negative".into());
    }
    let addr = (a.host.as_str(), a.port)
        .to_socket_addrs()
        .map_err(|e| io_err("address", e))?
        .next()
        .ok_or("no address")?;
    raise_nofile();
    // Open-loop deadlines are exact only with a small timer slack.
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1_000u64, 0u64, 0u64, 0u64) };
    let interval_ns = if a.rate > 0.0 {
        (a.conns as f64 * 1e9 / a.rate).max(1.0) as u64
    } else {
        0
    };
    let tls = if a.tls {
        if a.idle_conns > 0 {
            return Err("--idle-conns is plaintext only; drop it with --tls".into());
        }
        Some(tls_config(
            a.tls_ca.as_deref().ok_or("--tls needs --tls-ca FILE")?,
        )?)
    } else {
        None
    };
    let plan = Arc::new(Plan {
        tls,
        width,
        value: vec![b'v'; a.value_size.max],
        interval_ns,
        t0: AtomicU64::new(0),
        barrier: Barrier::new(a.threads + 1),
        addr,
        args: a.clone(),
    });
    let pid = a.server_pid;
    let rss_start = pid.and_then(proc_rss);
    let mut workers = Vec::new();
    for id in 0..a.threads {
        let n = a.conns / a.threads + usize::from(id < a.conns % a.threads);
        workers.push(Worker::new(Arc::clone(&plan), id, n)?);
    }
    let handles: Vec<_> = workers
        .into_iter()
        .map(|w| std::thread::spawn(move || w.main()))
        .collect();
    plan.barrier.wait(); // prefill done
    let rss_after_prefill = pid.and_then(proc_rss);
    let idle = if a.idle_conns > 0 {
        match open_idle(&plan, a.idle_conns) {
            Ok(v) => Some(v),
            Err(e) => {
                // Let the workers finish before reporting the failure.
                plan.t0.store(now_ns(), Ordering::SeqCst);
                plan.barrier.wait();
                for h in handles {
                    let _ = h.join();
                }
                return Err(e);
            }
        }
    } else {
        None
    };
    let rss_after_idle = idle.as_ref().and(pid.and_then(proc_rss));
    let t0 = now_ns() + 1_000_000;
    plan.t0.store(t0, Ordering::SeqCst);
    plan.barrier.wait();
    let win_start = t0 + (a.warmup * 1e9) as u64;
    let win_end = win_start + (a.duration * 1e9) as u64;
    let mut cpu_before = None;
    let mut cpu_after = None;
    let mut rss_max = pid.and_then(proc_rss);
    if a.duration > 0.0 {
        // Sample the server while the workers run.
        let mut started = false;
        loop {
            let now = now_ns();
            if !started && now >= win_start {
                started = true;
                cpu_before = pid.and_then(proc_cpu_ns);
            }
            if now >= win_end {
                cpu_after = pid.and_then(proc_cpu_ns);
                break;
            }
            if let Some(r) = pid.and_then(proc_rss) {
                rss_max = Some(rss_max.map_or(r, |m: u64| m.max(r)));
            }
            let until = if started { win_end } else { win_start };
            let nap = until.saturating_sub(now).clamp(1, 50_000_000);
            std::thread::sleep(Duration::from_nanos(nap));
        }
    }
    let mut tally = Tally::new();
    for h in handles {
        let t = h.join().map_err(|_| "a worker thread panicked")?;
        tally.merge(&t);
    }
    Ok(Report {
        tally,
        secs: a.duration,
        cpu_ns: match (cpu_before, cpu_after) {
            (Some(b), Some(e)) => Some(e.saturating_sub(b)),
            _ => None,
        },
        rss_start,
        rss_after_prefill,
        rss_max: if a.duration > 0.0 { rss_max } else { None },
        idle_secs: idle.map(|(_, s)| s),
        rss_after_idle,
    })
}

fn main() -> ExitCode {
    let a = Args::parse();
    match run(a.clone()) {
        Ok(r) => {
            if a.json {
                println!("{}", r.json(&a));
            } else {
                print!("{}", r.human(&a));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gannet-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_contiguous_and_tight() {
        let mut last = 0;
        for v in (0..1u64 << 20).step_by(7) {
            let i = Histogram::index(v);
            assert!(i >= last);
            last = i;
            let up = Histogram::upper(i);
            assert!(up >= v, "{v} -> {i} -> {up}");
            assert!((up - v) as f64 <= v as f64 / 128.0 + 1.0, "{v} {up}");
        }
        assert!(Histogram::index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5).unwrap() as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.01, "{p50}");
        let p99 = h.quantile(0.99).unwrap() as f64;
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.01, "{p99}");
        assert_eq!(h.quantile(1.0), Some(10_000_000));
    }

    #[test]
    fn zipf_matches_its_distribution() {
        for &s in &[0.5, 0.99, 1.0, 1.2] {
            let n = 1000u64;
            let z = Zipf::new(n, s);
            let mut rng = Rng::new(7);
            let mut counts = vec![0u64; n as usize + 1];
            let draws = 400_000;
            for _ in 0..draws {
                let k = z.sample(&mut rng);
                assert!((1..=n).contains(&k));
                counts[k as usize] += 1;
            }
            let norm: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
            for k in [1u64, 2, 10] {
                let want = (k as f64).powf(-s) / norm;
                let got = counts[k as usize] as f64 / draws as f64;
                assert!((got / want - 1.0).abs() < 0.05, "s={s} k={k} {got} {want}");
            }
        }
    }

    #[test]
    fn ranges_and_ratios() {
        assert_eq!(
            parse_range("100").unwrap(),
            SizeRange { min: 100, max: 100 }
        );
        assert_eq!(
            parse_range("50-500").unwrap(),
            SizeRange { min: 50, max: 500 }
        );
        assert!(parse_range("5-1").is_err());
        assert!((parse_ratio("9:1").unwrap() - 0.9).abs() < 1e-12);
        assert_eq!(parse_ratio("1:0").unwrap(), 1.0);
        assert!(parse_ratio("0:0").is_err());
    }

    #[test]
    fn proc_readers_read_ourselves() {
        let pid = std::process::id();
        assert!(proc_rss(pid).unwrap() > 0);
        assert!(proc_cpu_ns(pid).is_some());
    }
}
