//! The request path allocates nothing: a server runs in this process under
//! a counting global allocator, and steady-state traffic of every protocol
//! must not make its worker threads allocate.
//!
//! Why in-process: a separate daemon's heap cannot be watched from here.
//! The allocator counts what threads named `gannet-worker-*` allocate or
//! reallocate; the workers are the only threads that serve requests. (The
//! LRU maintainer and the crawler allocate a little once a second, which
//! is not per request.) Slab pages are `mmap`ed, not taken from the heap,
//! so item memory does not show here.
//!
//! Each phase runs its traffic once to warm up (a connection's buffers
//! and held-item list grow to their working size, the index grows to hold
//! the keys, pages are carved), then again while counting. The second pass
//! must allocate nothing at all: a per-request allocation would show up
//! thousands of times, a per-batch one hundreds of times.
//!
//! Not covered: a client that reads more slowly than the server writes.
//! What the socket refuses is copied into the connection's `pending`
//! buffer, allocated when that starts and freed once drained if it grew
//! past 16 KiB (docs/ARCHITECTURE.md, "Buffers and memory per
//! connection"): one allocation per such episode, measured at two per
//! batch of 6 MB of replies to a client with a 4 KiB receive buffer.
//!
//! `GANNET_ALLOC_TRACE=N` prints the stacks of the first N allocations
//! counted, to find the one a failure reports.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use gannet::clock::Clock;
use gannet::config;
use gannet::exec::Shared;
use gannet::server::{self, Server};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

/// While counting, print where this many allocations came from.
static TRACE_LEFT: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Inside `count`, whose own allocations are not counted.
    static IN_COUNT: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    // `try_with`: a thread being torn down may allocate after its
    // thread-locals are gone; such a thread is not serving requests.
    if IN_COUNT.try_with(Cell::get).unwrap_or(true) {
        return;
    }
    IN_COUNT.with(|t| t.set(true));
    // Only the workers serve requests. Reading the thread's name may
    // allocate once per thread; `IN_COUNT` keeps that out of the count.
    let worker = std::thread::current()
        .name()
        .is_some_and(|n| n.starts_with("gannet-worker"));
    if worker {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        if TRACE_LEFT.load(Ordering::Relaxed) > 0 {
            TRACE_LEFT.fetch_sub(1, Ordering::Relaxed);
            eprintln!(
                "allocation on {:?}:\n{}",
                std::thread::current().name(),
                std::backtrace::Backtrace::force_capture()
            );
        }
    }
    IN_COUNT.with(|t| t.set(false));
}

// SAFETY: every call is forwarded unchanged to `System`, and the counting
// never touches the memory. What the counting itself allocates (a thread
// handle, a trace) re-enters this allocator, where `IN_COUNT` sends it
// straight to `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One server at a time: the count is process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

/// The daemon's start-up, minus signals and privileges: parse, build the
/// shared state, bind, start the workers and the background threads.
/// Returns the server and its TCP and UDP ports, which the kernel picks
/// (`-p -1 -U -1`) and the port file names, as the other tests do it.
fn start(extra: &[&str]) -> (Server, u16, u16) {
    let port_file = common::temp_path("alloc-ports");
    // Read by `server::bind` below; this test is the only one in the
    // process, so nothing reads the environment meanwhile.
    std::env::set_var("MEMCACHED_PORT_FILENAME", &port_file);
    let mut args = vec![
        "gannet",
        "-p",
        "-1",
        "-U",
        "-1",
        "-l",
        "127.0.0.1",
        "-t",
        "2",
    ];
    args.extend_from_slice(extra);
    let settings = config::parse(args).unwrap_or_else(|e| panic!("bad flags: {}", e.stderr));
    let clock = Clock::new();
    let shared = Arc::new(Shared::new(settings, Arc::clone(&clock)));
    let bound = server::bind(&shared, None, None).expect("bind");
    let ports = std::fs::read_to_string(&port_file).expect("the port file");
    let _ = std::fs::remove_file(&port_file);
    let port_of = |kind: &str| -> u16 {
        ports
            .lines()
            .find_map(|l| l.strip_prefix(kind)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {kind} line in the port file: {ports:?}"))
    };
    let (tcp, udp) = (port_of("TCP INET:"), port_of("UDP INET:"));
    clock
        .spawn_ticker(Duration::from_millis(100))
        .expect("clock thread");
    let server = Server::start(Arc::clone(&shared), bound).expect("workers");
    gannet::exec::crawler::spawn(Arc::clone(&shared)).expect("crawler");
    gannet::exec::maintainer::spawn(Arc::clone(&shared)).expect("maintainer");
    gannet::exec::rebalance::spawn(Arc::clone(&shared)).expect("rebalancer");
    (server, tcp, udp)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Send `batch` and read until the reply ends with `end`.
fn exchange(s: &mut TcpStream, batch: &[u8], end: &[u8], got: &mut Vec<u8>) {
    got.clear();
    s.write_all(batch).expect("write");
    let mut buf = [0u8; 65536];
    while !got.ends_with(end) {
        let n = s.read(&mut buf).expect("read (no reply within 10 s)");
        assert!(
            n > 0,
            "server closed; got {:?}",
            String::from_utf8_lossy(got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

/// Run `pass` once to warm up, then again; return the allocations the
/// workers made during the second run.
fn second_pass(mut pass: impl FnMut()) -> u64 {
    pass();
    // Let the background threads run a few rounds of their own.
    std::thread::sleep(Duration::from_millis(300));
    let before = ALLOCS.load(Ordering::Relaxed);
    let trace = std::env::var("GANNET_ALLOC_TRACE").ok();
    TRACE_LEFT.store(
        trace.and_then(|t| t.parse().ok()).unwrap_or(0),
        Ordering::Relaxed,
    );
    pass();
    std::thread::sleep(Duration::from_millis(300));
    TRACE_LEFT.store(0, Ordering::Relaxed);
    ALLOCS.load(Ordering::Relaxed) - before
}

/// `rounds` of the batches on each of `conns` connections.
fn steady_state(port: u16, conns: usize, batches: &[(Vec<u8>, &[u8])], rounds: usize) -> u64 {
    let mut streams: Vec<TcpStream> = (0..conns).map(|_| connect(port)).collect();
    let mut got = Vec::new();
    second_pass(|| {
        for _ in 0..rounds {
            for s in streams.iter_mut() {
                for (batch, end) in batches {
                    exchange(s, batch, end, &mut got);
                }
            }
        }
    })
}

fn text_batches() -> Vec<(Vec<u8>, &'static [u8])> {
    let value = [b'v'; 100];
    let mut sets = Vec::new();
    let mut gets = Vec::new();
    let mut multi = b"get".to_vec();
    let mut mixed = Vec::new();
    for i in 0..100 {
        sets.extend_from_slice(format!("set key:{i:028} 0 0 100\r\n").as_bytes());
        sets.extend_from_slice(&value);
        sets.extend_from_slice(b"\r\n");
        gets.extend_from_slice(format!("get key:{i:028}\r\n").as_bytes());
        multi.extend_from_slice(format!(" key:{i:028} miss:{i}").as_bytes());
        mixed.extend_from_slice(
            format!(
                "gets key:{i:028}\r\nset n{i} 5 0 2\r\n10\r\nincr n{i} 7\r\ndecr n{i} 3\r\n\
                 append n{i} 0 0 1\r\n0\r\ntouch key:{i:028} 0\r\ndelete d{i}\r\n\
                 add d{i} 0 0 1\r\nx\r\ngat 0 d{i}\r\nbogus\r\nget {}\r\n\
                 replace d{i} 3 0 2\r\nyy\r\nprepend d{i} 0 0 1\r\np\r\ngats 0 d{i} n{i}\r\n\
                 cas d{i} 0 0 1 1\r\nz\r\nversion\r\nverbosity 0\r\n",
                "x".repeat(251)
            )
            .as_bytes(),
        );
    }
    sets.extend_from_slice(b"mn\r\n");
    gets.extend_from_slice(b"mn\r\n");
    multi.extend_from_slice(b"\r\nmn\r\n");
    mixed.extend_from_slice(b"mn\r\n");
    vec![
        (sets, b"MN\r\n"),
        (gets, b"MN\r\n"),
        (multi, b"MN\r\n"),
        (mixed, b"MN\r\n"),
    ]
}

fn meta_batches() -> Vec<(Vec<u8>, &'static [u8])> {
    let mut b = Vec::new();
    for i in 0..100 {
        b.extend_from_slice(
            format!(
                "ms m{i} 100 T0 F3\r\n{}\r\nmg m{i} v f t c k s h l O{i}\r\nmg m{i} q\r\n\
                 mg miss{i} v\r\nma c{i} N0 J5 D2 v\r\nma c{i} MD v\r\nmd d{i} q\r\n\
                 ms d{i} 1 I\r\nx\r\nmd d{i} I T30\r\nmg d{i} v c\r\nme m{i}\r\n\
                 ms bTx7 2 b MA N30\r\nab\r\nmg bTx7 b v k O9\r\nms m{i} 1 MP q\r\n<\r\n\
                 mg m{i} s v E77\r\nma n{i} q\r\n",
                "w".repeat(100)
            )
            .as_bytes(),
        );
    }
    b.extend_from_slice(b"mn\r\n");
    vec![(b, b"MN\r\n")]
}

/// Values larger than a read: the input pool, values read straight into
/// their items, replies written with `writev` from item memory.
fn large_batches() -> Vec<(Vec<u8>, &'static [u8])> {
    let mut b = Vec::new();
    for (i, len) in [20_000usize, 100_000, 300_000, 1000].iter().enumerate() {
        b.extend_from_slice(format!("set big{i} 0 0 {len}\r\n").as_bytes());
        b.extend(std::iter::repeat_n(b'L', *len));
        b.extend_from_slice(b"\r\nget big0 big1 big2 big3\r\n");
    }
    b.extend_from_slice(b"mn\r\n");
    vec![(b, b"MN\r\n")]
}

/// Send each request as one datagram (memcached's 8-byte frame header,
/// then text or binary) and wait for its reply, `rounds` times.
fn udp_steady_state(port: u16, requests: &[Vec<u8>], rounds: usize) -> u64 {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    sock.connect(("127.0.0.1", port)).expect("udp connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 65536];
    let mut id = 0u16;
    second_pass(|| {
        for _ in 0..rounds {
            for r in requests {
                id = id.wrapping_add(1);
                let mut d = id.to_be_bytes().to_vec();
                d.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
                d.extend_from_slice(r);
                sock.send(&d).expect("udp send");
                // Every reply here fits one datagram.
                let n = sock.recv(&mut buf).expect("no udp reply within 10 s");
                assert!(n > 8 && buf[..2] == id.to_be_bytes(), "stray datagram");
            }
        }
    })
}

fn udp_requests() -> Vec<Vec<u8>> {
    let mut r = Vec::new();
    for i in 0..50 {
        r.push(format!("set u{i} 0 0 100\r\n{}\r\n", "u".repeat(100)).into_bytes());
        r.push(format!("get u{i} u{} nope\r\n", i / 2).into_bytes());
        r.push(format!("mg u{i} v f t c\r\n").into_bytes());
        r.push(format!("incr u{i} 1\r\n").into_bytes());
        r.push(bin(0x0c, format!("u{i}").as_bytes(), &[], &[], i));
        r.push(bin(0x00, b"nope", &[], &[], i));
    }
    r
}

/// A binary request packet without CAS.
fn bin(op: u8, key: &[u8], extras: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    common::bin_packet(op, key, extras, value, 0, opaque)
}

fn binary_batches() -> Vec<(Vec<u8>, &'static [u8])> {
    const GET: u8 = 0x00;
    const SET: u8 = 0x01;
    const DELETE: u8 = 0x04;
    const INCR: u8 = 0x05;
    const NOOP: u8 = 0x0a;
    const GETK: u8 = 0x0c;
    const GETKQ: u8 = 0x0d;
    const APPEND: u8 = 0x0e;
    const TOUCH: u8 = 0x1c;
    const GAT: u8 = 0x1d;
    const ADD: u8 = 0x02;
    const GETQ: u8 = 0x09;
    const VERSION: u8 = 0x0b;
    const SETQ: u8 = 0x11;
    const DELETEQ: u8 = 0x14;
    const INCRQ: u8 = 0x15;
    let set_extras = [0, 0, 0, 7, 0, 0, 0, 0];
    let mut incr_extras = Vec::new();
    incr_extras.extend_from_slice(&3u64.to_be_bytes());
    incr_extras.extend_from_slice(&1u64.to_be_bytes());
    incr_extras.extend_from_slice(&0u32.to_be_bytes());
    let mut b = Vec::new();
    for i in 0..100u32 {
        let k = format!("b{i}");
        let k = k.as_bytes();
        b.extend(bin(SET, k, &set_extras, &[b'z'; 100], i));
        b.extend(bin(GET, k, &[], &[], i));
        b.extend(bin(GETK, k, &[], &[], i));
        b.extend(bin(GETKQ, k, &[], &[], i));
        b.extend(bin(GETKQ, b"absent", &[], &[], i));
        b.extend(bin(INCR, format!("c{i}").as_bytes(), &incr_extras, &[], i));
        b.extend(bin(APPEND, k, &[], b"!", i));
        b.extend(bin(TOUCH, k, &[0, 0, 0, 0], &[], i));
        b.extend(bin(GAT, k, &[0, 0, 0, 0], &[], i));
        b.extend(bin(DELETE, format!("d{i}").as_bytes(), &[], &[], i));
        b.extend(bin(GET, b"absent", &[], &[], i));
        b.extend(bin(SETQ, k, &set_extras, &[b'q'; 50], i));
        b.extend(bin(GETQ, k, &[], &[], i));
        b.extend(bin(ADD, k, &set_extras, b"exists", i));
        b.extend(bin(INCRQ, format!("c{i}").as_bytes(), &incr_extras, &[], i));
        b.extend(bin(DELETEQ, b"absent", &[], &[], i));
        b.extend(bin(VERSION, b"", &[], &[], i));
    }
    b.extend(bin(NOOP, b"", &[], &[], 0xfeed_f00d));
    // The NOOP reply: magic, opcode, no key, no extras, status 0, no body,
    // then the opaque; nothing else ends with these 16 bytes and 8 of CAS.
    let mut end = vec![0x81, NOOP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    end.extend_from_slice(&0xfeed_f00du32.to_be_bytes());
    end.extend_from_slice(&[0; 8]);
    vec![(b, Box::leak(end.into_boxed_slice()))]
}

#[test]
fn steady_traffic_allocates_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (server, port, udp_port) = start(&["-m", "64"]);
    let text = steady_state(port, 4, &text_batches(), 20);
    let meta = steady_state(port, 4, &meta_batches(), 20);
    let binary = steady_state(port, 4, &binary_batches(), 20);
    let large = steady_state(port, 2, &large_batches(), 10);
    let udp = udp_steady_state(udp_port, &udp_requests(), 10);
    server.stop();
    assert_eq!(
        (text, meta, binary, large, udp),
        (0, 0, 0, 0, 0),
        "heap allocations by the server during steady traffic \
         (text, meta, binary, large values, udp)"
    );
}
