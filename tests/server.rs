//! Server-level behaviour of the daemon: the `-c` connection limit, `-R`
//! fairness, `idle_timeout`, the unix socket, output bounds for clients that
//! do not read, and the graceful stop.
//!
//! These run against gannet only: memcached's own `-c` accounting counts
//! its internal descriptors (with `-c 50` it serves 33 clients), which
//! gannet deliberately does not copy (see docs/COMPATIBILITY.md); the reply
//! a rejected client sees is memcached's.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{show, Kind, Server};

fn stat(server: &Server, name: &str) -> u64 {
    stat_on(&mut server.connect(), name)
}

fn stat_on(c: &mut common::Client, name: &str) -> u64 {
    common::stat_num(&stats_text(c), name)
}

/// The whole `stats` reply on `c`.
fn stats_text(c: &mut common::Client) -> String {
    c.send(b"stats\r\n");
    let mut all = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !all.ends_with(b"END\r\n") && Instant::now() < deadline {
        let r = c.read_reply(usize::MAX, Duration::from_millis(200));
        all.extend_from_slice(&r.bytes);
        if r.closed {
            break;
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// `n` connections, each answered once (so each was accepted).
fn served_clients(server: &Server, n: usize) -> Vec<common::Client> {
    (0..n)
        .map(|i| {
            let mut c = server.connect();
            let r = c.exchange(b"version\r\n", 9);
            assert!(
                r.bytes.starts_with(b"VERSION "),
                "connection {i} within the limit was not served: {}",
                show(&r.bytes)
            );
            c
        })
        .collect()
}

#[test]
fn connection_limit_rejects_with_memcached_message() {
    let server = Server::start(Kind::Gannet, &["-c", "5", "-t", "2"]);
    let mut open = served_clients(&server, 5);
    let mut extra = server.connect();
    let r = extra.wait_close(Duration::from_secs(3));
    assert_eq!(show(&r.bytes), show(b"ERROR Too many open connections\r\n"));
    assert!(r.closed, "a rejected connection must be closed");

    // Closing one makes room again.
    drop(open.pop());
    std::thread::sleep(Duration::from_millis(200));
    let mut again = server.connect();
    let r = again.exchange(b"version\r\n", 9);
    assert!(r.bytes.starts_with(b"VERSION "), "{}", show(&r.bytes));
    drop(again);
    drop(open);
    std::thread::sleep(Duration::from_millis(200));
    assert!(stat(&server, "rejected_connections") >= 1);
}

/// `-o no_maxconns_fast`: at the limit a new client is not rejected but
/// waits in the listen backlog until a connection closes, while
/// `accepting_conns` is 0; the stretch is counted in `listen_disabled_num`
/// and `time_in_listen_disabled_us`. (memcached 1.6.18 does the same,
/// checked by hand: it waits once its descriptors run out.)
#[test]
fn connection_limit_without_maxconns_fast_makes_clients_wait() {
    let server = Server::start(
        Kind::Gannet,
        &["-c", "5", "-t", "2", "-o", "no_maxconns_fast"],
    );
    let mut open = served_clients(&server, 5);
    let mut waiting = server.connect();
    waiting.send(b"version\r\n");
    let r = waiting.read_reply(9, Duration::from_millis(500));
    assert!(
        r.bytes.is_empty() && !r.closed,
        "over the limit: {} (closed: {})",
        show(&r.bytes),
        r.closed
    );
    assert_eq!(stat_on(&mut open[0], "accepting_conns"), 0);
    assert_eq!(stat_on(&mut open[0], "listen_disabled_num"), 1);
    // memcached shows rejected_connections only with maxconns_fast.
    assert!(!stats_text(&mut open[0]).contains("STAT rejected_connections "));
    assert_eq!(stat_on(&mut open[0], "time_in_listen_disabled_us"), 0);

    // A place frees up: the waiting client is taken and answered.
    drop(open.pop());
    let r = waiting.read_reply(9, Duration::from_secs(3));
    assert!(r.bytes.starts_with(b"VERSION "), "{}", show(&r.bytes));
    assert_eq!(stat_on(&mut open[0], "accepting_conns"), 1);
    let waited = stat_on(&mut open[0], "time_in_listen_disabled_us");
    assert!(waited >= 400_000, "{waited} us");
    // `stats reset` zeroes both, as memcached's does.
    open[0].exchange(b"stats reset\r\n", 7);
    assert_eq!(stat_on(&mut open[0], "listen_disabled_num"), 0);
    assert_eq!(stat_on(&mut open[0], "time_in_listen_disabled_us"), 0);
}

/// `read_buf_*`: each worker's scratch buffer, plus a buffer of its own
/// for a connection holding part of a request; an emptied small buffer is
/// kept (free) until the connection closes, then by the worker's pool
/// (still free), as memcached's thread cache keeps its read buffers.
#[test]
fn read_buf_stats_follow_connection_buffers() {
    let server = Server::start(Kind::Gannet, &["-t", "2"]);
    let scratch = stat(&server, "read_buf_bytes");
    assert_eq!(stat(&server, "read_buf_count"), 2);
    assert!(scratch > 0);
    assert_eq!(stat(&server, "read_buf_bytes_free"), scratch);
    assert_eq!(stat(&server, "read_buf_oom"), 0);

    let mut c = server.connect();
    c.send(b"set k 0 0 10\r\n01234");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(stat(&server, "read_buf_count"), 3);
    let held = stat(&server, "read_buf_bytes");
    // A few bytes of a small request cost about their size.
    assert!(held > scratch && held - scratch < 256, "{held}");
    assert_eq!(stat(&server, "read_buf_bytes_free"), scratch);

    let r = c.exchange(b"56789\r\n", 8);
    assert_eq!(show(&r.bytes), show(b"STORED\r\n"));
    assert_eq!(stat(&server, "read_buf_count"), 3);
    assert_eq!(stat(&server, "read_buf_bytes_free"), held);

    drop(c);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(stat(&server, "read_buf_count"), 3);
    assert_eq!(stat(&server, "read_buf_bytes"), held);
    assert_eq!(stat(&server, "read_buf_bytes_free"), held);
}

/// `-o read_buf_mem_limit`: while a worker's connection buffers hold
/// more than its share (the limit over `-t`), a connection that would
/// need a buffer of its own is closed and counted in `read_buf_oom`;
/// complete requests need none and are served, and a connection already
/// holding a buffer finishes its request.
#[test]
fn read_buf_mem_limit_closes_connections_that_need_a_buffer() {
    // The partial value's buffer (its whole request, 1,100,000 bytes and
    // more) alone passes the 1 MiB share. (An append: a set's large value
    // is read into its item instead, see `exec::fill`.)
    let server = Server::start(
        Kind::Gannet,
        &["-t", "1", "-I", "2m", "-o", "read_buf_mem_limit=1"],
    );
    let value = vec![b'v'; 1_100_000];
    let mut big = server.connect();
    big.send(b"set big 0 0 1\r\nx\r\nappend big 0 0 1100000\r\n");
    big.send(&value[..600_000]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while stat(&server, "read_buf_bytes") < 600_000 {
        assert!(
            Instant::now() < deadline,
            "the partial value was not buffered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The complete set before the split one is answered before the close,
    // and its reply goes to this client only.
    let mut split = server.connect();
    split.send(b"set first 0 0 1\r\ny\r\nset small 0 0 10\r\n01");
    let r = split.wait_close(Duration::from_secs(3));
    assert!(r.closed, "{}", show(&r.bytes));
    assert_eq!(show(&r.bytes), show(b"STORED\r\n"));
    // Nothing of that batch is left for the worker's next client (the
    // reply buffer once kept it, and the next client got it first).
    let mut next = server.connect();
    let r = next.exchange(b"get nothing\r\n", 5);
    assert_eq!(show(&r.bytes), show(b"END\r\n"));
    assert_eq!(stat(&server, "read_buf_oom"), 1);

    let mut whole = server.connect();
    let r = whole.exchange(b"set w 0 0 1\r\nx\r\nget w\r\n", 26);
    assert_eq!(
        show(&r.bytes),
        show(b"STORED\r\nVALUE w 0 1\r\nx\r\nEND\r\n")
    );

    let mut rest = value[600_000..].to_vec();
    rest.extend_from_slice(b"\r\n");
    let r = big.exchange(&rest, 16);
    assert_eq!(show(&r.bytes), show(b"STORED\r\nSTORED\r\n"));
    // The large buffer is released: buffering is allowed again.
    let mut split = server.connect();
    split.send(b"set small 0 0 10\r\n01");
    std::thread::sleep(Duration::from_millis(100));
    let r = split.exchange(b"23456789\r\n", 8);
    assert_eq!(show(&r.bytes), show(b"STORED\r\n"));
    assert_eq!(stat(&server, "read_buf_oom"), 1);
}

#[test]
fn pipelined_batch_over_reqs_per_event_yields_and_keeps_order() {
    let server = Server::start(Kind::Gannet, &["-R", "2", "-t", "1"]);
    let mut c = server.connect();
    let mut input = Vec::new();
    let mut expect = Vec::new();
    for i in 0..50 {
        input.extend_from_slice(format!("set k{i} 0 0 1\r\n{}\r\n", i % 10).as_bytes());
        expect.extend_from_slice(b"STORED\r\n");
    }
    for i in 0..50 {
        input.extend_from_slice(format!("get k{i}\r\n").as_bytes());
        expect.extend_from_slice(format!("VALUE k{i} 0 1\r\n{}\r\nEND\r\n", i % 10).as_bytes());
    }
    let r = c.exchange(&input, expect.len());
    assert_eq!(show(&r.bytes), show(&expect));
    assert!(
        stat(&server, "conn_yields") > 0,
        "100 requests in one write with -R 2 must yield"
    );
}

#[test]
fn idle_connections_are_closed_after_idle_timeout() {
    let server = Server::start(Kind::Gannet, &["-o", "idle_timeout=1"]);
    let mut idle = server.connect();
    let mut busy = server.connect();
    let start = Instant::now();
    // The busy client keeps talking; the idle one says nothing.
    while start.elapsed() < Duration::from_millis(3500) {
        let r = busy.exchange(b"version\r\n", 9);
        assert!(!r.closed, "an active connection was closed");
        std::thread::sleep(Duration::from_millis(300));
    }
    let r = idle.wait_close(Duration::from_secs(3));
    assert!(r.closed, "idle connection still open after idle_timeout");
}

#[test]
fn unix_socket_serves_with_its_mask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("gannet-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The daemon may drop privileges to `nobody` after binding.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.join("gannet.sock");
    let path_s = path.to_str().unwrap().to_string();
    // The harness also passes -p; with -s memcached and gannet serve the
    // unix socket only, so wait for the socket file instead of the port.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gannet"));
    cmd.args(["-s", &path_s, "-a", "0770", "-U", "0"]);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.args(["-u", "nobody"]);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stream = loop {
        if let Ok(s) = UnixStream::connect(&path) {
            break s;
        }
        assert!(Instant::now() < deadline, "unix socket never accepted");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    stream.write_all(b"set u 1 0 2\r\nhi\r\nget u\r\n").unwrap();
    let want = b"STORED\r\nVALUE u 1 2\r\nhi\r\nEND\r\n";
    let mut got = vec![0u8; want.len()];
    let read = stream.read_exact(&mut got);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    read.unwrap();
    assert_eq!(show(&got), show(want));
    assert_eq!(mode, 0o770, "socket permissions must follow -a");
}

#[test]
fn client_that_never_reads_gets_bounded_output() {
    // 20 values of 512 KiB; then a multi-get naming them 40 times over
    // (400 MiB of replies) from a client that never reads. The server must
    // stop producing output instead of buffering it, and keep serving
    // others.
    let mut server = Server::start(Kind::Gannet, &["-m", "64"]);
    let value = vec![b'v'; 512 * 1024];
    let mut c = server.connect();
    for i in 0..20 {
        c.send(format!("set big{i} 0 0 {}\r\n", value.len()).as_bytes());
        c.send(&value);
        c.send(b"\r\n");
    }
    let r = c.read_reply(20 * 8, Duration::from_secs(2));
    assert_eq!(r.bytes.len(), 20 * 8, "{}", show(&r.bytes));

    let mut hog = server.connect();
    let mut line = b"get".to_vec();
    for _ in 0..40 {
        for i in 0..20 {
            line.extend_from_slice(format!(" big{i}").as_bytes());
        }
    }
    line.extend_from_slice(b"\r\n");
    hog.send(&line);
    std::thread::sleep(Duration::from_millis(1500));
    let rss_kb = common::rss_kb(server.pid());
    // 400 MiB of replies would be queued by a server that does not bound
    // output; the bound is about 1 MiB plus one item plus socket buffers.
    assert!(
        rss_kb < 200 * 1024,
        "server RSS grew to {rss_kb} KiB for a client that does not read"
    );
    server.assert_alive("a client that never reads");
    drop(hog);
}

#[test]
fn a_panicking_worker_aborts_the_process_with_a_log_line() {
    // debugpanic exists only in debug builds (the ones tests run).
    // A unix socket of its own, not a TCP port: listeners share ports
    // with SO_REUSEPORT, so a gannet of another test that happened to pick
    // the same port could take the connection, and this one would live.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gannet"));
    let path = std::env::temp_dir().join(format!("gannet-panic-{}.sock", std::process::id()));
    cmd.args(["-s", path.to_str().unwrap(), "-U", "0"]);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.args(["-u", "nobody"]);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut c = loop {
        if let Ok(c) = UnixStream::connect(&path) {
            break c;
        }
        assert!(Instant::now() < deadline, "gannet never listened");
        std::thread::sleep(Duration::from_millis(20));
    };
    c.write_all(b"debugpanic\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process kept running after a worker panicked");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let _ = std::fs::remove_file(&path);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
    assert!(
        err.contains("fatal: thread 'gannet-worker-") && err.contains("debugpanic requested"),
        "no clear log line: {err}"
    );
}

/// The worker ends a connection's turn after a read shorter than its
/// buffer instead of reading again until EAGAIN (one syscall less per
/// unpipelined request). These check the cases where that shortcut could
/// lose input: the peer's FIN queued right behind its last request (one
/// edge-triggered event reports both), a FIN after the reply, and a
/// request split across writes with a pause in between.
#[test]
fn short_reads_lose_neither_input_nor_end_of_stream() {
    let server = Server::start(Kind::Gannet, &["-t", "1"]);
    let all = b"set a 0 0 1\r\nx\r\nget a\r\n";
    let expect = b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n";

    // Request and FIN in one go: the reply comes, then the server closes.
    for round in 0..20 {
        let mut c = server.connect();
        c.send(all);
        c.shutdown_write();
        let r = c.wait_close(Duration::from_secs(5));
        assert_eq!(show(&r.bytes), show(expect), "round {round}");
        assert!(
            r.closed,
            "round {round}: FIN behind a request was never read"
        );
    }

    // FIN long after the reply: a new event, and the server closes.
    let mut c = server.connect();
    let r = c.exchange(all, expect.len());
    assert_eq!(show(&r.bytes), show(expect));
    std::thread::sleep(Duration::from_millis(50));
    c.shutdown_write();
    assert!(c.wait_close(Duration::from_secs(5)).closed);

    // A request in two writes: the first read is short and incomplete,
    // the rest arrives with its own event.
    let mut c = server.connect();
    c.send(b"get ");
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"a\r\n");
    let r = c.read_reply(b"VALUE a 0 1\r\nx\r\nEND\r\n".len(), Duration::from_secs(5));
    assert_eq!(show(&r.bytes), show(b"VALUE a 0 1\r\nx\r\nEND\r\n"));

    // Many request/reply rounds on one connection.
    for i in 0..50 {
        let r = c.exchange(b"get a\r\n", b"VALUE a 0 1\r\nx\r\nEND\r\n".len());
        assert_eq!(
            show(&r.bytes),
            show(b"VALUE a 0 1\r\nx\r\nEND\r\n"),
            "request {i}"
        );
    }

    // A value larger than one read (64 KB) in slow pieces.
    let value = vec![b'v'; 200_000];
    let mut req = b"set big 0 0 200000\r\n".to_vec();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    for piece in req.chunks(50_000) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = c.read_reply(8, Duration::from_secs(5));
    assert_eq!(show(&r.bytes), show(b"STORED\r\n"));
}
