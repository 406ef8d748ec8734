//! The command line measured against the real memcached.
//!
//! Operators replace memcached with gannet without changing scripts, so the
//! reference is not a spec but the installed `/usr/bin/memcached`: every
//! case runs both programs with the same arguments and requires the same
//! exit code and the same text, with memcached's name replaced by gannet's.
//! The binary-level tests need `config::parse` wired into `main`; the
//! library-level ones (`parse` and `stats_settings`) work on their own.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use gannet::config::{parse, SettingsStatsCtx};

const MEMCACHED: &str = "/usr/bin/memcached";
const GANNET: &str = env!("CARGO_BIN_EXE_gannet");

fn require_memcached() {
    assert!(
        std::path::Path::new(MEMCACHED).exists(),
        "{MEMCACHED} is missing: these tests compare gannet with the real memcached \
         (apt-get install memcached)"
    );
}

/// Runs `path` as `argv0 args...` and kills it if it has not exited within
/// a few seconds (a case that unexpectedly starts a server must not hang).
fn run(path: &str, argv0: &str, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(path)
        .arg0(argv0)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {path}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{path} {args:?} did not exit");
            }
        }
    }
    let out: Output = child.wait_with_output().expect("collect output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn memcached(args: &[&str]) -> (i32, String, String) {
    require_memcached();
    run(MEMCACHED, "memcached", args)
}

fn gannet(args: &[&str]) -> (i32, String, String) {
    run(GANNET, "gannet", args)
}

/// memcached's text with its name (as program and in the version line)
/// replaced by gannet's.
fn as_gannet(text: &str) -> String {
    let text = match text.split_once('\n') {
        Some((first, rest)) if first.starts_with("memcached 1.") => {
            format!("gannet {}\n{rest}", env!("CARGO_PKG_VERSION"))
        }
        _ => text.to_string(),
    };
    text.replace("memcached: ", "gannet: ")
}

/// Command lines memcached rejects before it binds anything.
const BAD: &[&[&str]] = &[
    &["-x"],
    &["-vx"],
    &["--bogus"],
    &["--bogus=3"],
    &["--ver"],
    &["--daemon=1"],
    &["--port"],
    &["-p"],
    &["-t", "0"],
    &["--threads=0"],
    &["-c", "0"],
    &["-c", "-5"],
    &["-R", "0"],
    &["-n", "0"],
    &["-f", "0.5"],
    &["-f", "abc"],
    &["-m", "garbage"],
    &["-m", "0"],
    &["-B", "foo"],
    &["-D", ""],
    &["-I", "0"],
    &["-I", "100m"],
    &["-I", "2000m", "-m", "10000"],
    &["-I", "1025"],
    &["-N", "0"],
    &["-N", "8"],
    &["-p", "70000"],
    &["-U", "70000"],
    // safe_strtol keeps the low 32 bits: this is 4.
    &["-o", "ssl_min_version=4294967300"],
    &["-S", "-B", "ascii"],
    &["-Y", "/nonexistent", "-B", "binary"],
    &["-t", "0", "-c", "0"],
    &["-t", "0", "--bogus"],
    &["-I", "2048m", "-m", "100000"],
    &["--max-reqs=0"],
    &["--napi=0"],
    &["-vvvx"],
    &["-o", "hashpower=abc"],
    &["-o", "slab_automove_ratio=2"],
    &["-o", ",x"],
    &["-o", "ssl_verify_mode=9"],
    &["-o", "ssl_min_version=4"],
    &["-o", "lru_crawler_tocrawl=-1"],
    // Listener specs fail after the root check, hence -u.
    &["-u", "nobody", "-l", "127.0.0.1:abc"],
    &["-u", "nobody", "-l", "127.0.0.1:"],
    &["-u", "nobody", "-l", "[::1]:abc"],
    &["-u", "nobody", "-l", "[::1"],
    &["-u", "nobody", "-l", "notls:127.0.0.1"],
    &["-u", "nobody", "-l", "tag[toolongtag]:127.0.0.1"],
    &["-u", "nobody", "-l", "tag[abc"],
    &["-u", "nobody", "-l", "proto[ascii"],
    &["-u", "nobody", "-l", "proto[proxy]:127.0.0.1"],
    &["-o", "bogus"],
    &["-o", "bogus=1"],
    &["-o", "idle_timeout=1,bogus"],
    &["-o", "hot_lru_pct=50,warm_lru_pct=40"],
    &["-o", "hot_lru_pct=90"],
    &["-o", "warm_lru_pct"],
    &["-o", "hot_max_factor=0"],
    &["-o", "temporary_ttl=5,no_lru_maintainer"],
    &["-o", "hashpower=5"],
    &["-o", "hashpower=40"],
    &["-o", "hashpower"],
    &["-o", "slab_automove=3"],
    &["-o", "slab_automove_window=1"],
    &["-o", "tail_repair_time=2"],
    &["-o", "hash_algorithm=md5"],
    &["-o", "lru_crawler_sleep=2000000"],
    &["-o", "lru_crawler_tocrawl=x"],
    &["-o", "idle_timeout"],
    &["-o", "ext_item_size=abc"],
    &["-o", "slab_chunk_max=1536"],
    &["-o", "slab_chunk_max=1000000"],
    &["-o", "slab_sizes="],
    &["-o", "slab_sizes=10"],
    &["-o", "slab_sizes=100-abc"],
    &["-o", "slab_sizes=100-100"],
    &["-o", "slab_sizes=200-100"],
    &["-o", "slab_sizes=100-108"],
    &["-o", "slab_sizes=100-600000"],
    &["-o", "slab_sizes=4294967306"],
    &["-o", "slab_sizes= +100-200x"],
    &["-n", "200", "-o", "slab_sizes=100"],
    &["-I", "2m", "-o", "slab_sizes=600000"],
    &["-o", "slab_sizes=20000,slab_chunk_max=16384"],
    // The -I checks come first, the LRU share check after.
    &["-I", "1025", "-o", "slab_sizes=10"],
    &["-o", "slab_sizes=10,hot_lru_pct=90"],
    &["-o", "slab_sizes=48-57-66-75-84-93-102-111-120-129-138-147-156-165-174-183-192-201-210-219-228-237-246-255-264-273-282-291-300-309-318-327-336-345-354-363-372-381-390-399-408-417-426-435-444-453-462-471-480-489-498-507-516-525-534-543-552-561-570-579-588-597-606"],
];

/// `-Z` without a certificate (or with a key file that does not load)
/// stops the start before the root check: exit 64 and memcached's
/// "Error loading ..." line, whose reason after the path is OpenSSL's in
/// memcached and rustls' in gannet.
#[test]
fn tls_without_certificate_exits_like_memcached() {
    let cases: &[(&[&str], &str)] = &[
        (&["-Z"], "Error loading the certificate chain: (null) : "),
        (
            &["-Z", "-o", "ssl_chain_cert=/nonexistent/cert.pem"],
            "Error loading the certificate chain: /nonexistent/cert.pem : ",
        ),
    ];
    for (args, prefix) in cases {
        for (name, (code, _, err)) in [("memcached", memcached(args)), ("gannet", gannet(args))] {
            assert_eq!(code, 64, "{name} {args:?}: {err}");
            let last = err.lines().last().unwrap_or("");
            assert!(
                last.starts_with(prefix),
                "{name} {args:?}: last stderr line {last:?}"
            );
            assert!(err.ends_with("\r\n"), "{name} {args:?}: {err:?}");
        }
    }
}

#[test]
fn license_exits_zero_on_stdout() {
    let mc = memcached(&["-i"]);
    let g = gannet(&["-i"]);
    assert_eq!((mc.0, g.0), (0, 0));
    assert!(g.2.is_empty() && !g.1.is_empty(), "gannet -i: {g:?}");
    assert!(g
        .1
        .starts_with(&format!("gannet {}\n", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn version_matches_memcached() {
    for flag in ["-V", "--version"] {
        let mc = memcached(&[flag]);
        let g = gannet(&[flag]);
        assert_eq!(mc.0, 0);
        assert_eq!(
            g,
            (0, as_gannet(&mc.1), as_gannet(&mc.2)),
            "gannet {flag} (is config::parse wired into main?)"
        );
    }
}

/// Option letters (`-p, ...`) and suboption names (`   - name:`) in order.
fn help_outline(text: &str) -> (Vec<String>, Vec<String>) {
    let mut opts = Vec::new();
    let mut subs = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('-') {
            if let Some(c) = rest.chars().next().filter(char::is_ascii_alphabetic) {
                let spec: String = line.chars().take_while(|c| *c != ' ').collect();
                // -vv / -vvv lines are spelled the same in both.
                opts.push(if spec.starts_with("-vv") {
                    spec
                } else {
                    format!("-{c}")
                });
            }
        } else if let Some(rest) = line.strip_prefix("   - ") {
            if let Some((name, _)) = rest.split_once(':') {
                if !name.contains(' ') {
                    subs.push(name.to_string());
                }
            }
        }
    }
    (opts, subs)
}

#[test]
fn help_has_memcached_layout() {
    let mc = memcached(&["-h"]);
    let g = gannet(&["-h"]);
    assert_eq!(mc.0, 0);
    assert_eq!(
        g.0, 0,
        "gannet -h exit code (is config::parse wired into main?)"
    );
    assert!(g.2.is_empty(), "gannet -h wrote to stderr: {}", g.2);
    let first = |t: &str| t.lines().next().unwrap_or_default().to_string();
    assert_eq!(first(&g.1), first(&as_gannet(&mc.1)));
    let (mc_opts, mc_subs) = help_outline(&mc.1);
    let (g_opts, g_subs) = help_outline(&g.1);
    assert_eq!(g_opts, mc_opts, "options listed by -h");
    // Every core suboption memcached documents, in memcached's order.
    let core: Vec<&String> = mc_subs
        .iter()
        .filter(|s| !s.starts_with("ext_") && !s.starts_with("ssl_"))
        .collect();
    let mut it = g_subs.iter();
    for s in core {
        assert!(
            it.any(|g| g == s),
            "-h lacks suboption {s} (or has it out of order)"
        );
    }
    // Same column layout for a plain option line.
    let port_line = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("-p, "))
            .map(|l| l[..26].to_string())
    };
    assert_eq!(port_line(&g.1), port_line(&mc.1));
    assert_eq!(gannet(&["--help"]), g);
}

#[test]
fn binary_rejects_like_memcached() {
    for args in BAD {
        let mc = memcached(args);
        assert_ne!(mc.0, 0, "memcached accepted {args:?}");
        let g = gannet(args);
        assert_eq!(
            g,
            (mc.0, as_gannet(&mc.1), as_gannet(&mc.2)),
            "gannet {args:?} (is config::parse wired into main?)"
        );
    }
}

/// `-L` with a budget too small to give every class its first page:
/// memcached's two lines on stderr and exit 1, after parsing succeeded.
#[test]
fn prealloc_refusal_matches_memcached() {
    for extra in [&["-m", "2"][..], &["-m", "2", "-f", "4"], &["-m", "38"]] {
        let port = free_port().to_string();
        let mut args = vec!["-u", "nobody", "-U", "0", "-p", &port, "-L"];
        args.extend_from_slice(extra);
        let mc = memcached(&args);
        assert_eq!(mc.0, 1, "memcached {args:?}: {mc:?}");
        assert!(mc.2.contains("megabytes"), "{mc:?}");
        assert_eq!(gannet(&args), mc, "gannet {args:?}");
    }
}

#[test]
fn parse_rejects_like_memcached() {
    for args in BAD {
        let mc = memcached(args);
        let mut argv = vec!["memcached"];
        argv.extend_from_slice(args);
        let e = match parse(argv) {
            Ok(_) => panic!("parse accepted {args:?}, memcached said {mc:?}"),
            Err(e) => e,
        };
        // parse names the program after argv[0], as getopt does.
        assert_eq!((e.code, e.stdout, e.stderr), mc, "args {args:?}");
    }
}

/// Runs `path` with `-vv` and `args` until it listens, then stops it and
/// returns the class table it printed at start-up. The kernel picks the
/// port (`-p -1`) and the server says when it listens through
/// `MEMCACHED_PORT_FILENAME`, so parallel tests cannot take each other's
/// port between a pick and a bind.
fn class_table(path: &str, args: &[&str]) -> Vec<String> {
    let port_file = common::temp_path("cli-port");
    let mut child = Command::new(path)
        .args([
            "-u",
            "nobody",
            "-U",
            "0",
            "-l",
            "127.0.0.1",
            "-p",
            "-1",
            "-vv",
        ])
        .args(args)
        .env("MEMCACHED_PORT_FILENAME", &port_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {path}: {e}"));
    if let Err(why) = common::wait_port_file(&mut child, &port_file) {
        let _ = child.kill();
        panic!(
            "{path} {args:?} did not start ({why}): {:?}",
            child.wait_with_output()
        );
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("collect stderr");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("slab class "))
        .map(str::to_string)
        .collect()
}

/// `-o slab_sizes` replaces the `-n`/`-f` table: the same classes as
/// memcached's, checked through the table both print at `-vv`.
#[test]
fn slab_sizes_give_memcacheds_class_table() {
    require_memcached();
    for args in [
        &["-o", "slab_sizes=100-164-200-4000"][..],
        &["-n", "100", "-f", "2", "-o", "slab_sizes=100-201-1000"],
        &["-o", "slab_sizes=4294967396-300,slab_chunk_max=16384"],
        &["-o", "slab_sizes=---"],
        &["-I", "2m", "-o", "slab_sizes=48-524288"],
    ] {
        let mc = class_table(MEMCACHED, args);
        assert!(!mc.is_empty(), "memcached {args:?} printed no class table");
        assert_eq!(class_table(GANNET, args), mc, "{args:?}");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free loopback port")
}

/// A memcached child, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// memcached's `stats settings` when started with `args`, or `None` when
/// the port in `args` turned out to be taken (memcached exited, or another
/// process answered there): the caller retries with another port.
fn memcached_stats_settings(args: &[String]) -> Option<Vec<(String, String)>> {
    require_memcached();
    let mut server = Server(
        Command::new(MEMCACHED)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start memcached"),
    );
    let port: u16 = args
        .iter()
        .position(|a| a == "-p")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
        .expect("-p in args");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => break c,
            Err(_) if matches!(server.0.try_wait(), Ok(Some(_))) => return None,
            Err(e) if Instant::now() > deadline => panic!("memcached {args:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut ask = |what: &[u8]| -> Vec<(String, String)> {
        conn.write_all(what).expect("send");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.ends_with(b"END\r\n") {
            let n = conn.read(&mut chunk).expect("read stats");
            assert!(n > 0, "memcached closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        }
        common::stat_pairs(&String::from_utf8_lossy(&buf))
    };
    let pid = server.0.id().to_string();
    if !ask(b"stats\r\n").contains(&("pid".to_string(), pid)) {
        return None;
    }
    Some(ask(b"stats settings\r\n"))
}

fn compare_stats_settings(extra: &[&str]) {
    // The port is part of what is compared (`tcpport`), so it is picked
    // here; a pick another process takes first is picked again.
    let (args, mc) = (0..5)
        .find_map(|_| {
            let port = free_port().to_string();
            let mut args: Vec<String> = ["-u", "nobody", "-U", "0", "-p", port.as_str()]
                .iter()
                .map(|s| s.to_string())
                .collect();
            args.extend(extra.iter().map(|s| s.to_string()));
            memcached_stats_settings(&args).map(|mc| (args, mc))
        })
        .expect("memcached found no free port in 5 tries");

    let mut argv = vec!["gannet".to_string()];
    argv.extend(args.iter().cloned());
    let settings = parse(argv).unwrap_or_else(|e| panic!("parse {args:?}: {e:?}"));
    let ours: Vec<(String, String)> = settings
        .stats_settings(&SettingsStatsCtx::from_settings(&settings))
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let names = |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&ours),
        names(&mc),
        "stats settings names/order for {extra:?}"
    );
    for (o, m) in ours.iter().zip(&mc) {
        assert_eq!(o, m, "stats settings value for {extra:?}");
    }
}

#[test]
fn stats_settings_default_matches_memcached() {
    compare_stats_settings(&["-l", "127.0.0.1"]);
}

#[test]
fn stats_settings_with_flags_matches_memcached() {
    compare_stats_settings(&[
        "-l",
        "127.0.0.1,127.0.0.2",
        "-l",
        "127.0.0.1",
        "-m",
        "128",
        "-c",
        "500",
        "-t",
        "2",
        "-f",
        "1.5",
        "-n",
        "64",
        "-D",
        "#",
        "-I",
        "2m",
        "-a",
        "755",
        "-F",
        "-X",
        "-C",
        "-R",
        "10",
        "-b",
        "256",
        "-M",
        "-vv",
        "-A",
        "-B",
        "ascii",
        "-o",
        "hot_lru_pct=30,temporary_ttl=100,slab_automove=2,idle_timeout=30,track_sizes",
        "-o",
        "hash_algorithm=jenkins,hot_max_factor=0.333,warm_max_factor=1.5",
    ]);
}

#[test]
fn stats_settings_with_suboptions_matches_memcached() {
    compare_stats_settings(&[
        "-l",
        "127.0.0.1",
        "-o",
        "no_lru_crawler,no_lru_maintainer,no_maxconns_fast,no_slab_reassign,\
         slab_automove_ratio=0.5,slab_automove_window=10,lru_crawler_sleep=50,\
         lru_crawler_tocrawl=7,tail_repair_time=20,watcher_logbuf_size=128,\
         read_buf_mem_limit=2,slab_chunk_max=262144,ext_item_size=1024,ext_max_frag=0.5,\
         slab_automove_freeratio=0.02,ext_drop_unread,ssl_ciphers=HIGH,ssl_min_version=3,\
         ssl_verify_mode=2,ssl_wbuf_size=32,hashpower=20",
    ]);
}

/// Numbers as memcached's `safe_strto*` read them: a value past 32 bits
/// keeps its low bits, `-0` is 0, `2^64 - 1` is `u32::MAX`, and a double
/// may be written in any decimal form.
#[test]
fn stats_settings_with_wrapped_numbers_matches_memcached() {
    compare_stats_settings(&[
        "-l",
        "127.0.0.1",
        "-o",
        "lru_crawler_tocrawl=4294967297,read_buf_mem_limit=4294967298,ext_max_frag=5e-1,\
         slab_automove_ratio=.25,ext_item_size=-0,ext_item_age=18446744073709551615",
    ]);
}
