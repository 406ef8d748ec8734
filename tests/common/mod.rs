//! Shared black-box harness for the integration tests.
//!
//! It starts a server process (gannet or the reference `/usr/bin/memcached`)
//! on a 127.0.0.1 port the kernel picks (`-p -1`; the server names it in
//! the file `MEMCACHED_PORT_FILENAME` points to, so no port is guessed
//! free and then raced for), waits until the port accepts, and kills the
//! process on `Drop`. [`Client`] sends raw bytes and reads replies with
//! timeouts, reporting "the server closed the connection" as a distinct
//! outcome, so a test can assert exact bytes and connection state.
//!
//! API (kept small on purpose):
//! - [`Kind`]: which server; [`Server::start`]`(kind, &args)`; [`Server::port`];
//!   [`Server::connect`]; [`Server::assert_alive`]; [`Server::wait_exit`].
//! - [`Client::send`], [`Client::read_reply`], [`Client::exchange`],
//!   [`Client::wait_close`], [`Client::shutdown_write`].
//! - [`Reply`] (`bytes`, `closed`); [`show`] escapes bytes for messages.
//! - [`require_file`] panics loudly when a reference tool is missing.
//! - [`bin_packet`] builds a binary protocol request.
//! - [`stat_pairs`], [`stat_names`], [`stat_value`], [`stat_num`] read a
//!   `stats` reply.
//!
//! Both servers get `-p -1 -l 127.0.0.1 -U 0`, plus `-u nobody` when the
//! tests run as root (memcached refuses to run as root without `-u`, exit
//! code 64; it accepts both `-u root` and `-u nobody`, and `nobody` is what
//! an operator would pass), plus the case's own arguments.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The reference server binary.
pub const MEMCACHED: &str = "/usr/bin/memcached";
/// libmemcached's conformance tool.
pub const MEMCCAPABLE: &str = "/usr/bin/memccapable";

/// How long a read waits for more data once nothing arrives.
pub const IDLE: Duration = Duration::from_millis(300);
/// Upper bound on one `read_reply`, however the data trickles in.
pub const READ_CAP: Duration = Duration::from_secs(10);
/// How long a server may take to accept its first connection.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Which server a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The daemon under test (`CARGO_BIN_EXE_gannet`).
    Gannet,
    /// The reference, `/usr/bin/memcached`.
    Memcached,
}

impl Kind {
    /// Short name used in failure messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Gannet => "gannet",
            Kind::Memcached => "memcached",
        }
    }
}

/// Panic with a clear message if `path` does not exist. A missing peer is
/// a failure, never a skip.
pub fn require_file(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install it (apt-get install memcached libmemcached-tools); \
         the conformance tests need the reference to compare against"
    );
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A path in the temporary directory no other test of any process uses:
/// `gannet-<what>-<pid>-<n>`.
pub fn temp_path(what: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "gannet-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Wait (at most 5 s) for `child` to publish the port file at `path`
/// (`MEMCACHED_PORT_FILENAME`) and return its text, removing the file.
/// `Err` says why not: the process exited (with its status) or time ran
/// out.
pub fn wait_port_file(child: &mut Child, path: &Path) -> Result<String, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            let _ = std::fs::remove_file(path);
            return Ok(text);
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Err(format!("exited with {status}"));
        }
        if Instant::now() > deadline {
            return Err("no port file within 5 s".into());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A running server process; killed (and reaped) on drop.
pub struct Server {
    child: Child,
    port: u16,
    kind: Kind,
    args: Vec<String>,
}

impl Server {
    /// Start `kind` on a free 127.0.0.1 port with `extra` arguments and wait
    /// (at most 5 s) until it accepts connections. Panics with the server's
    /// stderr if it exits or never listens.
    pub fn start(kind: Kind, extra: &[&str]) -> Server {
        let program = match kind {
            Kind::Gannet => env!("CARGO_BIN_EXE_gannet"),
            Kind::Memcached => {
                require_file(MEMCACHED);
                MEMCACHED
            }
        };
        let mut last_err = String::new();
        // A port a case names in its own `-l` entries can still be taken
        // by a parallel test: retry when the server exits.
        for _attempt in 0..3 {
            let port_file = temp_path("test-ports");
            let mut args: Vec<String> = vec![
                "-p".into(),
                "-1".into(),
                "-l".into(),
                "127.0.0.1".into(),
                "-U".into(),
                "0".into(),
            ];
            if running_as_root() {
                args.push("-u".into());
                args.push("nobody".into());
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            let child = Command::new(program)
                .env("MEMCACHED_PORT_FILENAME", &port_file)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
            let mut server = Server {
                child,
                port: 0,
                kind,
                args,
            };
            match server.wait_port_file(&port_file) {
                Ok(port) => server.port = port,
                Err(e) => {
                    last_err = e;
                    continue;
                }
            }
            match server.wait_listening() {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!(
            "{} {:?} did not start listening: {last_err}",
            kind.name(),
            extra
        );
    }

    /// The first TCP port the server wrote to its port file.
    fn wait_port_file(&mut self, path: &Path) -> Result<u16, String> {
        let text = wait_port_file(&mut self.child, path).map_err(|why| {
            let mut err = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            format!("{why}; stderr: {err}")
        })?;
        text.lines()
            .find_map(|l| l.strip_prefix("TCP INET: "))
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| format!("no TCP INET line in the port file: {text:?}"))
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("exited with {status}; stderr: {err}"));
            }
            if let Ok(s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.shutdown(Shutdown::Both);
                // Make sure the process that accepted is ours.
                thread::sleep(Duration::from_millis(20));
                if self.child.try_wait().expect("try_wait").is_none() {
                    return Ok(());
                }
                continue;
            }
            if Instant::now() > deadline {
                return Err("port never accepted within 5 s".into());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Which server this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Open a new client connection (panics on failure).
    pub fn connect(&self) -> Client {
        Client::connect(self.port)
            .unwrap_or_else(|e| panic!("{}: connect failed: {e}", self.describe()))
    }

    /// "gannet [args]" for messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.kind.name(), self.args.join(" "))
    }

    /// Assert the process is still running and that a fresh client can
    /// store and read back a value.
    pub fn assert_alive(&mut self, context: &str) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("{}: server died after {context}: {status}", self.describe());
        }
        let mut c = Client::connect(self.port)
            .unwrap_or_else(|e| panic!("{}: cannot connect after {context}: {e}", self.describe()));
        let expect = b"STORED\r\nVALUE alive_check 7 2\r\nok\r\nEND\r\n";
        let r = c.exchange(
            b"set alive_check 7 0 2\r\nok\r\nget alive_check\r\n",
            expect.len(),
        );
        assert_eq!(
            show(&r.bytes),
            show(expect),
            "{}: round trip failed after {context}",
            self.describe()
        );
    }
}

impl Server {
    /// Wait (at most `limit`) for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a read produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Every byte received.
    pub bytes: Vec<u8>,
    /// The server closed (EOF or reset) the connection.
    pub closed: bool,
}

/// A raw text-protocol connection.
pub struct Client {
    stream: TcpStream,
    closed: bool,
}

impl Client {
    /// Connect to 127.0.0.1:`port` with TCP_NODELAY.
    pub fn connect(port: u16) -> std::io::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(Client {
            stream,
            closed: false,
        })
    }

    /// Write all of `bytes`. A write error (the server closed, or stopped
    /// reading for the 5 s write timeout) is recorded, reported as `closed`
    /// by the next read, and makes later sends no-ops.
    pub fn send(&mut self, bytes: &[u8]) {
        if self.closed {
            return;
        }
        if self.stream.write_all(bytes).is_err() {
            self.closed = true;
        }
    }

    /// Read until `want` bytes have arrived (then wait briefly for any
    /// surplus), until the connection closes, or until nothing arrives for
    /// `idle`. Never blocks longer than about `idle` past the last data,
    /// nor longer than [`READ_CAP`] in all.
    pub fn read_reply(&mut self, want: usize, idle: Duration) -> Reply {
        let cap = Instant::now() + READ_CAP;
        let mut bytes = Vec::new();
        let mut buf = [0u8; 65536];
        // Read even after a failed write: replies sent before the server
        // closed may still be buffered on our side.
        let mut closed = false;
        while !closed && Instant::now() < cap {
            // Once the expected amount is there, only linger for surplus.
            let wait = if bytes.len() >= want {
                Duration::from_millis(30)
            } else {
                idle
            };
            self.stream
                .set_read_timeout(Some(wait))
                .expect("set_read_timeout");
            match self.stream.read(&mut buf) {
                Ok(0) => closed = true,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => closed = true, // reset counts as closed
            }
        }
        let closed = closed || self.closed;
        self.closed = closed;
        Reply { bytes, closed }
    }

    /// `send` then `read_reply(want, IDLE)`.
    pub fn exchange(&mut self, input: &[u8], want: usize) -> Reply {
        self.send(input);
        self.read_reply(want, IDLE)
    }

    /// Wait (at most `limit`) for the server to close the connection,
    /// returning the bytes received meanwhile and whether it closed.
    pub fn wait_close(&mut self, limit: Duration) -> Reply {
        let deadline = Instant::now() + limit;
        let mut all = Vec::new();
        loop {
            let r = self.read_reply(usize::MAX, Duration::from_millis(100));
            all.extend_from_slice(&r.bytes);
            if r.closed || Instant::now() > deadline {
                return Reply {
                    bytes: all,
                    closed: r.closed,
                };
            }
        }
    }

    /// Half-close: tell the server we will send nothing more (FIN).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// The underlying stream (for tests that need socket options).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

/// Run `memccapable -h 127.0.0.1 -p <port> -t 5 <mode>` (mode `-a` or
/// `-b`), killing it after 60 s. Returns its exit status (`None` on
/// timeout), stdout and stderr.
pub fn run_memccapable(
    port: u16,
    mode: &str,
) -> (Option<std::process::ExitStatus>, String, String) {
    require_file(MEMCCAPABLE);
    let port = port.to_string();
    let mut child = Command::new(MEMCCAPABLE)
        .args(["-h", "127.0.0.1", "-p", &port, "-t", "5", mode])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start memccapable");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    (
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// Resident set size of process `pid` in KiB (VmRSS of /proc/pid/status).
pub fn rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/pid/status")
}

/// Printable form of protocol bytes: printable ASCII kept, `\r` `\n` and
/// everything else escaped, long runs of one byte compressed.
pub fn show(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let mut run = 1;
        while i + run < bytes.len() && bytes[i + run] == b {
            run += 1;
        }
        let one = match b {
            b'\r' => "\\r".to_string(),
            b'\n' => "\\n".to_string(),
            b'\\' => "\\\\".to_string(),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\x{b:02x}"),
        };
        if run > 8 {
            out.push_str(&format!("{one}{{x{run}}}"));
        } else {
            for _ in 0..run {
                out.push_str(&one);
            }
        }
        i += run;
    }
    out
}

/// memcached and gannet started with the same `extra` flags (memcached
/// first); fails loudly when memcached is not installed.
pub fn both(extra: &[&str]) -> [Server; 2] {
    require_file(MEMCACHED);
    [
        Server::start(Kind::Memcached, extra),
        Server::start(Kind::Gannet, extra),
    ]
}

/// Send `input`, then read until the reply ends with `end`, the server
/// closes, or 10 s pass.
pub fn until(c: &mut Client, input: &[u8], end: &[u8]) -> Vec<u8> {
    c.send(input);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while !got.ends_with(end) && Instant::now() < deadline {
        let r = c.read_reply(1, Duration::from_millis(200));
        got.extend_from_slice(&r.bytes);
        if r.closed {
            break;
        }
    }
    got
}

/// The `stats` counters that follow from the commands a server was sent
/// and its replies to them: two servers given the same input must agree
/// on them. Each test adds what its traffic also moves.
pub const COMMAND_COUNTERS: &[&str] = &[
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "cmd_meta",
    "get_hits",
    "get_misses",
    "delete_misses",
    "delete_hits",
    "incr_misses",
    "incr_hits",
    "decr_misses",
    "decr_hits",
    "cas_misses",
    "cas_hits",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "store_too_large",
    "store_no_memory",
    "auth_cmds",
    "auth_errors",
];

/// The `(name, value)` pairs of a `stats` reply, in order. Lines that are
/// not `STAT <name> <value>` (`END`, errors) are skipped; a value may hold
/// spaces (`stats conns` addresses, `stats settings` strings).
pub fn stat_pairs(reply: &str) -> Vec<(String, String)> {
    reply
        .lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The names of a `stats` reply, in order.
pub fn stat_names(reply: &str) -> Vec<String> {
    stat_pairs(reply).into_iter().map(|(k, _)| k).collect()
}

/// The value of `name` in a `stats` reply, if it has that line.
pub fn stat_value<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    reply.lines().find_map(|l| {
        l.strip_prefix("STAT ")?
            .strip_prefix(name)?
            .strip_prefix(' ')
            .map(str::trim)
    })
}

/// The number `name` has in a `stats` reply; panics, quoting the reply,
/// when the line is missing or its value is not a number.
pub fn stat_num(reply: &str, name: &str) -> u64 {
    let v = stat_value(reply, name).unwrap_or_else(|| panic!("no {name} in stats: {reply}"));
    v.parse()
        .unwrap_or_else(|_| panic!("stat {name} = {v:?} is not a number"))
}

/// A binary protocol request packet (magic 0x80, data type 0, vbucket 0).
pub fn bin_packet(
    op: u8,
    key: &[u8],
    extras: &[u8],
    value: &[u8],
    cas: u64,
    opaque: u32,
) -> Vec<u8> {
    let mut p = vec![0x80, op];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.extend_from_slice(&[0, 0, 0]);
    let body = (key.len() + extras.len() + value.len()) as u32;
    p.extend_from_slice(&body.to_be_bytes());
    p.extend_from_slice(&opaque.to_be_bytes());
    p.extend_from_slice(&cas.to_be_bytes());
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}
