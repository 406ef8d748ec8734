//! The soak: a long mixed workload against one gannet process, run by
//! `scripts/soak.sh [seconds]` (this test is `#[ignore]`d so `cargo test`
//! skips it; the script runs it in release mode with `--ignored`).
//!
//! Environment: `GANNET_SOAK_SECONDS` (default 600), `GANNET_SOAK_WORKERS`
//! (default 4), `GANNET_SOAK_KEYS` (default 50000).
//!
//! Each worker owns a slice of the key space (keys `i % workers == w`), so
//! it knows the last version it stored under each key. Every value carries
//! its key, version and length and ends with a checksum of all of that, so
//! a read proves both integrity (checksum) and freshness: a hit must be
//! exactly the last version stored (a miss is always allowed: eviction,
//! TTL, flush). Workers mix gets, multi-gets, sets with and without TTLs,
//! deletes and touches, and reconnect every few hundred operations; one
//! thread flushes the cache now and then, one churns connections, and the
//! main thread samples RSS. At the end, after every TTL has run out, a full
//! scan of the key space is compared with `curr_items` and `bytes`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{rss_kb, Kind, Server};

fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// `key|version|len|filler|checksum`, `len` bytes of filler.
fn make_value(key: &str, version: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{key}|{version}|{len}|").into_bytes();
    v.extend((0..len).map(|i| b'a' + ((version as usize + i) % 26) as u8));
    let sum = fnv(&v);
    v.extend_from_slice(format!("|{sum:016x}").as_bytes());
    v
}

/// The version a value carries, if it is intact and belongs to `key`.
fn check_value(key: &str, v: &[u8]) -> Result<u64, String> {
    if v.len() < 17 {
        return Err(format!("value too short: {} bytes", v.len()));
    }
    let (body, tail) = v.split_at(v.len() - 17);
    let sum = std::str::from_utf8(&tail[1..]).map_err(|_| "checksum not text")?;
    if tail[0] != b'|' || format!("{:016x}", fnv(body)) != sum {
        return Err("checksum mismatch".into());
    }
    let text = String::from_utf8_lossy(body);
    let mut parts = text.splitn(4, '|');
    let (k, ver, len) = (parts.next(), parts.next(), parts.next());
    if k != Some(key) {
        return Err(format!("value of key {k:?} returned for {key}"));
    }
    let version: u64 = ver.and_then(|s| s.parse().ok()).ok_or("bad version")?;
    let len: usize = len.and_then(|s| s.parse().ok()).ok_or("bad length")?;
    if make_value(key, version, len) != v {
        return Err("filler does not match".into());
    }
    Ok(version)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Log-uniform 10 ..= 20_000 bytes.
    fn size(&mut self) -> usize {
        let e = self.below(10_000) as f64 / 10_000.0 * (2000f64).log10();
        (10.0 * 10f64.powf(e)) as usize
    }
}

/// A buffered text-protocol connection with timeouts.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.set_write_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Conn { s, buf: Vec::new() }
    }

    fn send(&mut self, data: &[u8]) {
        self.s.write_all(data).expect("write to gannet");
    }

    fn fill(&mut self) {
        let mut tmp = [0u8; 65536];
        loop {
            match self.s.read(&mut tmp) {
                Ok(0) => panic!("gannet closed a soak connection"),
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read from gannet: {e}"),
            }
        }
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                self.buf.drain(..p + 2);
                return l;
            }
            self.fill();
        }
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n + 2 {
            self.fill();
        }
        let v = self.buf[..n].to_vec();
        assert_eq!(&self.buf[n..n + 2], b"\r\n", "data block not ended by CRLF");
        self.buf.drain(..n + 2);
        v
    }

    /// Read `VALUE` blocks until `END`: (key, value) pairs.
    fn values(&mut self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let l = self.line();
            if l == "END" {
                return out;
            }
            let parts: Vec<&str> = l.split(' ').collect();
            assert!(
                parts.len() >= 4 && parts[0] == "VALUE",
                "unexpected get reply line: {l}"
            );
            let key = parts[1].to_string();
            let n: usize = parts[3].parse().expect("length");
            let v = self.bytes(n);
            out.push((key, v));
        }
    }
}

struct Totals {
    ops: AtomicU64,
    hits: AtomicU64,
    wrong: AtomicU64,
    oom: AtomicU64,
}

fn record_wrong(totals: &Totals, msg: String) {
    let n = totals.wrong.fetch_add(1, Ordering::Relaxed);
    if n < 20 {
        eprintln!("soak: WRONG VALUE: {msg}");
    }
}

fn worker(port: u16, w: u64, workers: u64, keys: u64, stop: Arc<AtomicBool>, totals: Arc<Totals>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w + 1).wrapping_mul(0xff51_afd7_ed55_8ccd));
    // Last version stored per owned key (None: never, or deleted).
    let mine: Vec<u64> = (0..keys).filter(|k| k % workers == w).collect();
    let mut last: Vec<Option<u64>> = vec![None; mine.len()];
    let mut version = 0u64;
    let mut conn = Conn::open(port);
    let mut until_reconnect = 200 + rng.below(800);
    let key_name = |k: u64| format!("soak:{k}");
    let verify = |totals: &Totals, key: &str, v: &[u8], want: Option<u64>| match check_value(key, v)
    {
        Err(e) => record_wrong(totals, format!("{key}: {e}")),
        Ok(got) if Some(got) != want => record_wrong(
            totals,
            format!("{key}: version {got}, last stored {want:?}"),
        ),
        Ok(_) => {
            totals.hits.fetch_add(1, Ordering::Relaxed);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        until_reconnect -= 1;
        if until_reconnect == 0 {
            conn = Conn::open(port);
            until_reconnect = 200 + rng.below(800);
        }
        let i = rng.below(mine.len() as u64) as usize;
        let key = key_name(mine[i]);
        let roll = rng.below(100);
        match roll {
            // get
            0..=34 => {
                conn.send(format!("get {key}\r\n").as_bytes());
                for (k, v) in conn.values() {
                    assert_eq!(k, key, "get returned another key");
                    verify(&totals, &key, &v, last[i]);
                }
            }
            // multi-get of 10 owned keys
            35..=49 => {
                let idx: Vec<usize> = (0..10)
                    .map(|_| rng.below(mine.len() as u64) as usize)
                    .collect();
                let mut req = b"get".to_vec();
                for &j in &idx {
                    req.extend_from_slice(format!(" {}", key_name(mine[j])).as_bytes());
                }
                req.extend_from_slice(b"\r\n");
                conn.send(&req);
                for (k, v) in conn.values() {
                    let j = mine
                        .iter()
                        .position(|&m| key_name(m) == k)
                        .unwrap_or_else(|| panic!("multi-get returned a key not asked for: {k}"));
                    verify(&totals, &k, &v, last[j]);
                }
            }
            // set, 20% with a TTL of 1..5 s
            50..=84 => {
                version += 1;
                let ttl = if rng.below(5) == 0 {
                    1 + rng.below(5)
                } else {
                    0
                };
                let v = make_value(&key, version, rng.size());
                let mut req = format!("set {key} 0 {ttl} {}\r\n", v.len()).into_bytes();
                req.extend_from_slice(&v);
                req.extend_from_slice(b"\r\n");
                conn.send(&req);
                match conn.line().as_str() {
                    "STORED" => last[i] = Some(version),
                    "SERVER_ERROR out of memory storing object" => {
                        totals.oom.fetch_add(1, Ordering::Relaxed);
                        last[i] = None;
                    }
                    other => panic!("set {key}: {other}"),
                }
            }
            // delete
            85..=92 => {
                conn.send(format!("delete {key}\r\n").as_bytes());
                let r = conn.line();
                assert!(r == "DELETED" || r == "NOT_FOUND", "delete {key}: {r}");
                last[i] = None;
            }
            // touch (keeps the value)
            _ => {
                conn.send(format!("touch {key} {}\r\n", rng.below(6)).as_bytes());
                let r = conn.line();
                assert!(r == "TOUCHED" || r == "NOT_FOUND", "touch {key}: {r}");
            }
        }
        totals.ops.fetch_add(1, Ordering::Relaxed);
    }
}

fn stat(port: u16, name: &str) -> u64 {
    let mut c = Conn::open(port);
    c.send(b"stats\r\n");
    let mut text = String::new();
    loop {
        let l = c.line();
        if l == "END" {
            break;
        }
        text.push_str(&l);
        text.push('\n');
    }
    common::stat_num(&text, name)
}

/// Get every key of the key space: (hits, sum of key+value lengths).
fn scan(port: u16, keys: u64, totals: &Totals) -> (u64, u64) {
    let mut c = Conn::open(port);
    let (mut hits, mut payload) = (0, 0);
    for chunk in (0..keys).collect::<Vec<_>>().chunks(100) {
        let mut req = b"get".to_vec();
        for k in chunk {
            req.extend_from_slice(format!(" soak:{k}").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        c.send(&req);
        for (k, v) in c.values() {
            if let Err(e) = check_value(&k, &v) {
                record_wrong(totals, format!("scan {k}: {e}"));
            }
            hits += 1;
            payload += (k.len() + v.len()) as u64;
        }
    }
    (hits, payload)
}

#[test]
#[ignore = "long-running: run by scripts/soak.sh"]
fn soak() {
    let seconds = env_or("GANNET_SOAK_SECONDS", 600);
    let workers = env_or("GANNET_SOAK_WORKERS", 4);
    let keys = env_or("GANNET_SOAK_KEYS", 50_000);
    let mut server = Server::start(Kind::Gannet, &["-m", "64", "-t", "4", "-c", "4096"]);
    let port = server.port();
    let pid = server.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let totals = Arc::new(Totals {
        ops: AtomicU64::new(0),
        hits: AtomicU64::new(0),
        wrong: AtomicU64::new(0),
        oom: AtomicU64::new(0),
    });
    let rss_start = rss_kb(pid);
    let start = Instant::now();
    let mut threads: Vec<_> = (0..workers)
        .map(|w| {
            let (stop, totals) = (Arc::clone(&stop), Arc::clone(&totals));
            thread::spawn(move || worker(port, w, workers, keys, stop, totals))
        })
        .collect();
    // Flusher: flush_all every 20 s (half of them delayed by 2 s).
    {
        let stop = Arc::clone(&stop);
        threads.push(thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..200 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
                n += 1;
                let mut c = Conn::open(port);
                let cmd: &[u8] = if n.is_multiple_of(2) {
                    b"flush_all\r\n"
                } else {
                    b"flush_all 2\r\n"
                };
                c.send(cmd);
                assert_eq!(c.line(), "OK", "flush_all");
            }
        }));
    }
    // Churner: short-lived connections, half closed with a reset.
    let churned = Arc::new(AtomicU64::new(0));
    {
        let (stop, churned) = (Arc::clone(&stop), Arc::clone(&churned));
        threads.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let mut c = Conn::open(port);
                c.send(b"version\r\n");
                assert!(c.line().starts_with("VERSION "));
                if i.is_multiple_of(2) {
                    let _ = socket2::SockRef::from(&c.s).set_linger(Some(Duration::ZERO));
                }
                drop(c);
                churned.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(2));
            }
        }));
    }
    // Sample RSS every 5 s.
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        thread::sleep(Duration::from_secs(5).min(Duration::from_secs(seconds)));
        let rss = rss_kb(pid);
        samples.push(rss);
        eprintln!(
            "soak: t={:>4}s ops={} rss={} KiB wrong={}",
            start.elapsed().as_secs(),
            totals.ops.load(Ordering::Relaxed),
            rss,
            totals.wrong.load(Ordering::Relaxed)
        );
        if let Some(st) = server.wait_exit(Duration::ZERO) {
            panic!("gannet exited during the soak: {st}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("a soak thread failed");
    }
    let duration = start.elapsed();
    // Let every TTL (<= 5 s) and the delayed flush (2 s) pass, then scan
    // twice: the first scan unlinks what expired, the second must agree
    // with the counters exactly.
    thread::sleep(Duration::from_secs(6));
    let first = scan(port, keys, &totals);
    let (hits, payload) = scan(port, keys, &totals);
    assert_eq!(
        first.0, hits,
        "items vanished between two scans with no writer"
    );
    let curr_items = stat(port, "curr_items");
    let bytes = stat(port, "bytes");
    let limit = stat(port, "limit_maxbytes");
    let evictions = stat(port, "evictions");
    let rss_end = rss_kb(pid);
    let rss_max = samples
        .iter()
        .copied()
        .max()
        .unwrap_or(rss_end)
        .max(rss_end);
    let ops = totals.ops.load(Ordering::Relaxed);
    let wrong = totals.wrong.load(Ordering::Relaxed);
    println!(
        "soak summary: duration {:.0}s, ops {ops} ({:.0}/s), hits {}, connections churned {}, \
         evictions {evictions}, oom {}, RSS start/end/max {rss_start}/{rss_end}/{rss_max} KiB, \
         curr_items {curr_items} (scan {hits}), bytes {bytes} (payload {payload}), wrong values {wrong}",
        duration.as_secs_f64(),
        ops as f64 / duration.as_secs_f64(),
        totals.hits.load(Ordering::Relaxed),
        churned.load(Ordering::Relaxed),
        totals.oom.load(Ordering::Relaxed),
    );
    assert_eq!(wrong, 0, "wrong values were read");
    assert!(ops > 0);
    assert_eq!(curr_items, hits, "curr_items disagrees with a full scan");
    // `bytes` counts key, value and item header of every live item.
    assert!(
        bytes >= payload && bytes <= payload + curr_items * 128 && bytes <= limit,
        "bytes {bytes} is inconsistent with {curr_items} items of {payload} payload bytes"
    );
    // Flat: once the cache is full (the first quarter), RSS may not keep
    // climbing: the end stays within 10% (+4 MiB) of the first-quarter peak.
    let quarter = samples.len().div_ceil(4).max(1);
    let early = samples[..quarter.min(samples.len())]
        .iter()
        .copied()
        .max()
        .unwrap_or(rss_end);
    assert!(
        rss_end <= early + early / 10 + 4096,
        "RSS kept growing: first quarter peak {early} KiB, end {rss_end} KiB ({samples:?})"
    );
    server.assert_alive("the soak");
}
