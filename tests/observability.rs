//! Observability: every `stats` group against memcached 1.6's, `watch`
//! streams, `-vv` logging, `stats latency`, `stats hotkeys`, and the
//! Prometheus `/metrics` endpoint (checked by a strict text-format parser
//! written here, values compared with `stats`).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin_packet, Kind, Server};

/// A plain blocking connection with a read deadline.
struct Conn {
    s: TcpStream,
}

impl Conn {
    fn new(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        Conn { s }
    }

    fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("write");
    }

    /// Read until the buffer ends with one of `ends` (or 5 s pass).
    fn read_until(&mut self, ends: &[&[u8]]) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while Instant::now() < deadline {
            if ends.iter().any(|e| out.ends_with(e)) {
                break;
            }
            match self.s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => continue,
            }
        }
        out
    }

    fn cmd(&mut self, line: &str, ends: &[&[u8]]) -> String {
        self.send(line.as_bytes());
        String::from_utf8_lossy(&self.read_until(ends)).into_owned()
    }

    /// `stats <group>` as (name, value) pairs, in order.
    fn stats(&mut self, group: &str) -> Vec<(String, String)> {
        let line = if group.is_empty() {
            "stats\r\n".to_string()
        } else {
            format!("stats {group}\r\n")
        };
        let text = self.cmd(&line, &[b"END\r\n", b"ERROR\r\n"]);
        assert!(text.ends_with("END\r\n"), "stats {group}: {text:?}");
        common::stat_pairs(&text)
    }

    fn stat_map(&mut self, group: &str) -> HashMap<String, String> {
        self.stats(group).into_iter().collect()
    }

    /// Lines that arrive within `wait` (a watch stream).
    fn lines_for(&mut self, wait: Duration) -> Vec<String> {
        let out = self.bytes_for(wait);
        String::from_utf8_lossy(&out)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Everything that arrives within `wait`.
    fn bytes_for(&mut self, wait: Duration) -> Vec<u8> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while Instant::now() < deadline {
            match self.s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => continue,
            }
        }
        out
    }
}

fn num(m: &HashMap<String, String>, k: &str) -> u64 {
    m.get(k)
        .unwrap_or_else(|| panic!("no stat {k}"))
        .parse()
        .unwrap_or_else(|_| panic!("stat {k} not a number: {:?}", m.get(k)))
}

/// A small workload run the same way against both servers.
fn workload(c: &mut Conn) {
    for (cmd, end) in [
        ("set a:1 0 0 3\r\nabc\r\n", "STORED\r\n"),
        ("set b:2 5 100 5\r\nhello\r\n", "STORED\r\n"),
        ("get a:1 b:2 nope\r\n", "END\r\n"),
        ("delete a:1\r\n", "DELETED\r\n"),
        ("incr nope 1\r\n", "NOT_FOUND\r\n"),
        ("touch b:2 10\r\n", "TOUCHED\r\n"),
    ] {
        let r = c.cmd(cmd, &[end.as_bytes(), b"ERROR\r\n"]);
        assert!(r.ends_with(end), "{cmd:?} -> {r:?}");
    }
}

fn names(v: &[(String, String)]) -> Vec<&str> {
    v.iter().map(|(k, _)| k.as_str()).collect()
}

/// Field names, in order, of every group against memcached with the same
/// flags and the same workload.
#[test]
fn stats_groups_have_memcached_names_and_order() {
    let mc = Server::start(Kind::Memcached, &[]);
    let gn = Server::start(Kind::Gannet, &[]);
    let mut m = Conn::new(mc.port());
    let mut g = Conn::new(gn.port());
    workload(&mut m);
    workload(&mut g);
    for group in ["", "settings", "items", "slabs", "sizes"] {
        let a = m.stats(group);
        let b = g.stats(group);
        assert_eq!(
            names(&a),
            names(&b),
            "stats {group}: memcached vs gannet field names"
        );
    }
    // Values that must agree exactly after the same workload.
    let (a, b) = (m.stat_map(""), g.stat_map(""));
    for k in [
        "cmd_get",
        "cmd_set",
        "get_hits",
        "get_misses",
        "delete_hits",
        "incr_misses",
        "touch_hits",
        "curr_items",
        "total_items",
        "threads",
        "max_connections",
        "limit_maxbytes",
    ] {
        assert_eq!(a[k], b[k], "stats {k}");
    }
    // Value formats: rusage is sec.usec, version and libevent are words.
    let ru = &b["rusage_user"];
    let (s, us) = ru.split_once('.').expect("rusage_user sec.usec");
    assert!(s.parse::<u64>().is_ok() && us.len() == 6, "{ru}");
    // Per-class rows of the same class hold the same counts.
    let (a, b) = (m.stat_map("slabs"), g.stat_map("slabs"));
    for k in [
        "cmd_set",
        "get_hits",
        "delete_hits",
        "touch_hits",
        "used_chunks",
    ] {
        let ka = a.keys().find(|n| n.ends_with(&format!(":{k}"))).unwrap();
        let kb = b.keys().find(|n| n.ends_with(&format!(":{k}"))).unwrap();
        assert_eq!(a[ka], b[kb], "slabs {k}");
    }
    // stats conns: the same fields per connection.
    let field_set = |v: Vec<(String, String)>| {
        let mut f: Vec<String> = v
            .into_iter()
            .filter_map(|(k, _)| k.split_once(':').map(|(_, f)| f.to_string()))
            .collect();
        f.sort();
        f.dedup();
        f
    };
    assert_eq!(field_set(m.stats("conns")), field_set(g.stats("conns")));
    // Unknown group, detail usage, reset: byte for byte.
    for line in [
        "stats nosuch\r\n",
        "stats detail\r\n",
        "stats detail on\r\n",
        "stats reset\r\n",
    ] {
        let ends: &[&[u8]] = &[b"\r\n"];
        assert_eq!(m.cmd(line, ends), g.cmd(line, ends), "{line:?}");
    }
}

/// `lru tune|mode|temp_ttl` and `slabs automove ratio` change the running
/// cache: the same replies as memcached, `stats settings` shows the new
/// values, and `stats items` lists `number_temp` exactly while the TEMP
/// LRU is in use, with the short-TTL item counted there.
#[test]
fn lru_commands_change_the_running_cache_like_memcached() {
    let run = |kind: Kind, args: &[&str]| -> Vec<String> {
        let s = Server::start(kind, args);
        let mut c = Conn::new(s.port());
        let mut out = Vec::new();
        let ask = |c: &mut Conn, out: &mut Vec<String>, line: &str| {
            out.push(c.cmd(&format!("{line}\r\n"), &[b"\r\n"]));
        };
        for line in [
            "lru tune 50 40 0.5 2",
            "lru tune 30 30 0 1",
            "lru tune 30 30 0.3 1.5",
            "lru mode bogus",
            "lru mode flat",
            "lru mode segmented",
            "lru temp_ttl x",
            "lru temp_ttl 100",
            "slabs automove ratio 0.5",
        ] {
            ask(&mut c, &mut out, line);
        }
        ask(&mut c, &mut out, "set t 0 50 1\r\nt");
        ask(&mut c, &mut out, "set p 0 0 1\r\np");
        let items = c.stat_map("items");
        let temp = items.iter().find(|(k, _)| k.ends_with(":number_temp"));
        out.push(format!("number_temp {:?}", temp.map(|(_, v)| v.clone())));
        ask(&mut c, &mut out, "lru temp_ttl -1");
        let items = c.stat_map("items");
        let temp = items.keys().any(|k| k.ends_with(":number_temp"));
        let hot = items.keys().any(|k| k.ends_with(":number_hot"));
        out.push(format!("number_temp shown {temp}, number_hot shown {hot}"));
        let settings = c.stat_map("settings");
        for k in [
            "hot_lru_pct",
            "warm_lru_pct",
            "hot_max_factor",
            "warm_max_factor",
            "lru_segmented",
            "temp_lru",
            "temporary_ttl",
            "slab_automove_ratio",
        ] {
            out.push(format!("{k} {}", settings[k]));
        }
        out
    };
    for args in [&[][..], &["-o", "no_lru_maintainer"]] {
        let want = run(Kind::Memcached, args);
        let got = run(Kind::Gannet, args);
        assert_eq!(got, want, "{args:?}");
    }
}

/// `extstore <setting> <value>` (Debian's memcached is built with
/// extstore, so the command exists even without `ext_path`): the same
/// replies as memcached, and `stats settings` shows what it set, including
/// the 0 memcached leaves behind after a value it cannot read.
/// `stats extstore` lists no pages.
#[test]
fn extstore_command_changes_settings_like_memcached() {
    let run = |kind: Kind| -> Vec<String> {
        let s = Server::start(kind, &[]);
        let mut c = Conn::new(s.port());
        let mut out = Vec::new();
        for line in [
            "extstore",
            "extstore item_size",
            "extstore item_size abc",
            "extstore item_age 4294967297",
            "extstore recache_rate -0",
            "extstore compact_under 3 4",
            // noreply: only the next command's reply comes back.
            "extstore low_ttl 5 noreply\r\nextstore drop_under 2",
            "extstore max_sleep 10",
            "extstore max_frag x",
            "extstore drop_unread 7",
            "extstore free_memchunks 63 1",
            "extstore free_memchunks 64 1",
            "extstore free_memchunks 1",
            "extstore bogus 1",
            "extstore HTTP/1.1",
            "stats extstore",
            "version",
        ] {
            out.push(c.cmd(&format!("{line}\r\n"), &[b"\r\n"]));
        }
        let settings = c.stat_map("settings");
        let mut ext: Vec<String> = settings
            .iter()
            .filter(|(k, _)| k.starts_with("ext_"))
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        ext.sort();
        out.extend(ext);
        out
    };
    let want = run(Kind::Memcached);
    let got = run(Kind::Gannet);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        if w.starts_with("VERSION") {
            continue;
        }
        assert_eq!(g, w);
    }
    assert!(want.contains(&"ext_max_frag 0.00".to_string()), "{want:?}");
}

/// `stats sizes` without `-o track_sizes` and `stats detail dump` agree
/// byte for byte; detail counts per prefix.
#[test]
fn detail_dump_and_sizes_status_match_memcached() {
    let mc = Server::start(Kind::Memcached, &[]);
    let gn = Server::start(Kind::Gannet, &[]);
    let mut out = Vec::new();
    for s in [&mc, &gn] {
        let mut c = Conn::new(s.port());
        let sizes = c.cmd("stats sizes\r\n", &[b"END\r\n"]);
        let on = c.cmd("stats detail on\r\n", &[b"OK\r\n"]);
        workload(&mut c);
        let r = c.cmd("get a:1 a:2 b:2\r\n", &[b"END\r\n"]);
        let dump = c.cmd("stats detail dump\r\n", &[b"END\r\n"]);
        let off = c.cmd("stats detail off\r\n", &[b"OK\r\n"]);
        out.push((sizes, on, r, dump, off));
    }
    assert_eq!(out[0], out[1]);
    assert_eq!(out[1].0, "STAT sizes_status disabled\r\nEND\r\n");
    assert!(
        out[1].3.contains("PREFIX a get 3 hit 1 set 1 del 1"),
        "{}",
        out[1].3
    );
}

/// `-D <char>` sets the prefix delimiter and, as in memcached, turns
/// collection on from the start: no `stats detail on` needed.
#[test]
fn delimiter_flag_turns_detail_on_like_memcached() {
    let mut out = Vec::new();
    for kind in [Kind::Memcached, Kind::Gannet] {
        let s = Server::start(kind, &["-D", "#"]);
        let mut c = Conn::new(s.port());
        let settings = c.cmd("stats settings\r\n", &[b"END\r\n"]);
        let enabled = settings
            .lines()
            .find(|l| l.starts_with("STAT detail_enabled "))
            .map(str::to_string);
        let set = c.cmd("set a#1 0 0 1\r\nx\r\n", &[b"STORED\r\n"]);
        let get = c.cmd("get a#1 a#2 b:1\r\n", &[b"END\r\n"]);
        let dump = c.cmd("stats detail dump\r\n", &[b"END\r\n"]);
        out.push((enabled, set, get, dump));
    }
    assert_eq!(out[0], out[1]);
    assert_eq!(out[1].0.as_deref(), Some("STAT detail_enabled yes"));
    assert_eq!(out[1].3, "PREFIX a get 2 hit 1 set 1 del 0\r\nEND\r\n");
}

/// The names (in order) of `stats` and `stats items` after one set, with
/// the optional groups memcached leaves out: `no_lru_maintainer` drops the
/// maintainer's counters, `no_modern` also `rejected_connections`, the
/// `slab_reassign_*` lines and the crawler's, and `lru_crawler disable`
/// drops the crawler's at run time.
#[test]
fn optional_stats_lines_follow_the_settings_like_memcached() {
    let names = common::stat_names;
    for (flags, first, crawler) in [
        (&["-o", "no_lru_maintainer"][..], None, true),
        (&["-o", "no_modern"][..], None, false),
        (&[][..], Some("lru_crawler disable\r\n"), false),
    ] {
        let mut out = Vec::new();
        for kind in [Kind::Memcached, Kind::Gannet] {
            let s = Server::start(kind, flags);
            let mut c = Conn::new(s.port());
            if let Some(cmd) = first {
                c.cmd(cmd, &[b"\r\n"]);
            }
            c.cmd("set k 0 0 1\r\nx\r\n", &[b"STORED\r\n"]);
            let general = names(&c.cmd("stats\r\n", &[b"END\r\n"]));
            let items = names(&c.cmd("stats items\r\n", &[b"END\r\n"]));
            out.push((general, items));
        }
        assert_eq!(out[0], out[1], "{flags:?} {first:?}");
        let general = &out[1].0;
        assert_eq!(general.iter().any(|n| n == "lru_crawler_running"), crawler);
        if first.is_none() {
            assert!(!general.iter().any(|n| n == "moves_to_cold"));
            assert!(!out[1].1.iter().any(|n| n.ends_with(":hits_to_hot")));
        }
    }
}

/// `curr_connections`, `total_connections` and `connection_structures`
/// read as memcached's: its listeners count as connections (one per TCP
/// address, one per worker for each UDP address, `curr_connections` less
/// one), it keeps a structure per descriptor number, so that count
/// follows the peak of open connections, and `stats reset` zeroes only
/// the total; `reserved_fds` is five per worker thread. Rows: one
/// client, 31 clients, back to one, after a reset.
#[test]
fn connection_counts_match_memcached() {
    let udp_port = || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        s.local_addr().expect("local_addr").port().to_string()
    };
    let counts = |c: &mut Conn| {
        let m = c.stat_map("");
        [
            num(&m, "curr_connections"),
            num(&m, "total_connections"),
            num(&m, "connection_structures"),
            num(&m, "reserved_fds"),
        ]
    };
    for udp in [false, true] {
        let mut seen = Vec::new();
        for kind in [Kind::Memcached, Kind::Gannet] {
            let port = udp_port();
            let flags: &[&str] = if udp { &["-U", &port, "-t", "3"] } else { &[] };
            let s = Server::start(kind, flags);
            let mut first = Conn::new(s.port());
            let mut rows = vec![counts(&mut first)];
            let mut more: Vec<Conn> = (0..30).map(|_| Conn::new(s.port())).collect();
            for c in &mut more {
                assert!(c.cmd("version\r\n", &[b"\r\n"]).starts_with("VERSION "));
            }
            rows.push(counts(&mut first));
            drop(more);
            // The servers see the closes a moment later.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut row = counts(&mut first);
            while row[0] != rows[0][0] && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                row = counts(&mut first);
            }
            rows.push(row);
            assert_eq!(first.cmd("stats reset\r\n", &[b"\r\n"]), "RESET\r\n");
            rows.push(counts(&mut first));
            seen.push(rows);
        }
        assert_eq!(
            seen[0], seen[1],
            "udp {udp}: [curr, total, structures, reserved_fds], memcached then gannet"
        );
    }
}

/// `stats sizes_enable` as memcached: items stored before it are left out
/// both ways, enabling again keeps the counts, it takes a CAS value (as
/// `flush_all` and `-o track_sizes` do), and `-C` refuses it. The items
/// are small enough to fall in the same 32-byte bucket in both servers.
/// `conn_yields` counts the turns a connection ended with pipelined input
/// left for later because the `-R` budget ran out: a batch of exactly
/// `-R` requests makes none. Each batch is one write, answered in full
/// before the next; the stats connection is separate.
#[test]
fn conn_yields_match_memcached() {
    let mut seen = Vec::new();
    for kind in [Kind::Memcached, Kind::Gannet] {
        let s = Server::start(kind, &[]);
        let mut stats = Conn::new(s.port());
        let mut c = Conn::new(s.port());
        let mut rows = Vec::new();
        // Requests per batch; the last of each is `mn`, so the batch is
        // answered when `MN` arrives.
        for n in [19, 20, 21, 40, 41, 61, 5, 100] {
            let batch = format!("{}mn\r\n", "get missing\r\n".repeat(n - 1));
            let reply = c.cmd(&batch, &[b"MN\r\n"]);
            assert!(reply.ends_with("MN\r\n"), "{kind:?} batch of {n}");
            rows.push((n, num(&stats.stat_map(""), "conn_yields")));
        }
        seen.push(rows);
    }
    assert_eq!(
        seen[0], seen[1],
        "(batch, conn_yields): memcached, then gannet"
    );
    // The batches really exceeded the budget.
    assert_ne!(seen[0].last().map(|r| r.1), Some(0));
}

#[test]
fn sizes_switch_and_cas_values_match_memcached() {
    let script: &[(&str, &[&[u8]])] = &[
        ("set s1 0 0 3\r\nabc\r\n", &[b"STORED\r\n"]),
        ("stats sizes_enable\r\n", &[b"\r\n"]),
        ("set s2 0 0 3\r\nabc\r\n", &[b"STORED\r\n"]),
        ("delete s1\r\n", &[b"DELETED\r\n"]),
        ("stats sizes\r\n", &[b"END\r\n"]),
        ("stats sizes_enable\r\n", &[b"\r\n"]),
        ("stats sizes\r\n", &[b"END\r\n"]),
        ("gets s2\r\n", &[b"END\r\n"]),
        ("flush_all\r\n", &[b"OK\r\n"]),
        ("set s3 0 0 3\r\nabc\r\n", &[b"STORED\r\n"]),
        ("gets s3\r\n", &[b"END\r\n"]),
        ("stats sizes_disable\r\n", &[b"\r\n"]),
        ("stats sizes\r\n", &[b"END\r\n"]),
    ];
    let run = |flags: &[&str], script: &[(&str, &[&[u8]])]| -> Vec<Vec<String>> {
        let servers = [
            Server::start(Kind::Memcached, flags),
            Server::start(Kind::Gannet, flags),
        ];
        servers
            .iter()
            .map(|s| {
                let mut c = Conn::new(s.port());
                script.iter().map(|(l, ends)| c.cmd(l, ends)).collect()
            })
            .collect()
    };
    let out = run(&[], script);
    assert_eq!(out[0], out[1]);
    assert_eq!(out[1][4], "STAT 64 1\r\nEND\r\n");
    assert_eq!(out[1][5], "STAT sizes_status enabled\r\n");
    assert_eq!(out[1][6], "STAT 64 1\r\nEND\r\n");
    // s1, the watermark, s2; then flush_all's own value before s3.
    assert_eq!(out[1][7], "VALUE s2 0 3 3\r\nabc\r\nEND\r\n");
    assert_eq!(out[1][10], "VALUE s3 0 3 5\r\nabc\r\nEND\r\n");
    assert_eq!(out[1][12], "STAT sizes_status disabled\r\nEND\r\n");

    let refused: &[(&str, &[&[u8]])] = &[
        ("stats sizes_enable\r\n", &[b"cas_support_disabled\r\n"]),
        ("stats sizes\r\n", &[b"END\r\n"]),
    ];
    let out = run(&["-C"], refused);
    assert_eq!(out[0], out[1]);
    assert_eq!(
        out[1][0],
        "STAT sizes_status error\r\nSTAT sizes_error cas_support_disabled\r\n"
    );
    assert_eq!(out[1][1], "STAT sizes_status disabled\r\nEND\r\n");

    let at_start: &[(&str, &[&[u8]])] = &[
        ("set s1 0 0 3\r\nabc\r\n", &[b"STORED\r\n"]),
        ("gets s1\r\n", &[b"END\r\n"]),
        ("stats sizes\r\n", &[b"END\r\n"]),
    ];
    let out = run(&["-o", "track_sizes"], at_start);
    assert_eq!(out[0], out[1]);
    assert_eq!(out[1][1], "VALUE s1 0 3 2\r\nabc\r\nEND\r\n");
    assert_eq!(out[1][2], "STAT 64 1\r\nEND\r\n");
}

/// memcached refuses `watch` and `lru_crawler metadump` while replies of
/// earlier commands in the same input are still queued (quiet ones too),
/// but not after a `get` or `mn`, which write theirs at once; and nothing
/// pipelined behind a `watch` runs.
#[test]
fn watch_and_metadump_refuse_queued_replies_like_memcached() {
    let cases: &[(&str, &str)] = &[
        (
            "delete nokey\r\nwatch\r\n",
            "ERROR cannot pipeline other commands before watch\r\n",
        ),
        (
            "delete w noreply\r\nwatch\r\n",
            "ERROR cannot pipeline other commands before watch\r\n",
        ),
        (
            "get nokey\r\nwatch\r\ndelete nokey\r\nget nokey\r\n",
            "END\r\nOK\r\n",
        ),
        ("mn\r\nwatch\r\n", "MN\r\nOK\r\n"),
        (
            "delete nokey\r\nlru_crawler metadump all\r\n",
            "ERROR cannot pipeline other commands before metadump\r\n",
        ),
        ("mn\r\nlru_crawler metadump all\r\n", "MN\r\nEND\r\n"),
        (
            "get nokey\r\nlru_crawler metadump all\r\n",
            "END\r\nEND\r\n",
        ),
    ];
    let servers = [
        Server::start(Kind::Memcached, &[]),
        Server::start(Kind::Gannet, &[]),
    ];
    for (input, tail) in cases {
        let got: Vec<String> = servers
            .iter()
            .map(|s| {
                let mut c = Conn::new(s.port());
                let mut out = c.cmd(input, &[tail.as_bytes()]);
                // Nothing may follow (a watcher answers nothing more).
                out.push_str(&String::from_utf8_lossy(
                    &c.bytes_for(Duration::from_millis(300)),
                ));
                out
            })
            .collect();
        assert_eq!(got[0], got[1], "{input:?}");
        assert!(got[1].ends_with(tail), "{input:?}: {:?}", got[1]);
    }
}

/// `uptime` and `stats settings`' `oldest` are read on memcached's clock:
/// uptime runs 2 s ahead of the real one (so `time - uptime` is the
/// start-up time less 2 s), and `oldest`, set by a `flush_all`, is a time
/// on a clock 60 s ahead of `uptime`.
#[test]
fn uptime_and_oldest_follow_memcached_s_clock() {
    let servers = [
        Server::start(Kind::Memcached, &[]),
        Server::start(Kind::Gannet, &[]),
    ];
    let mut born = Vec::new();
    for s in &servers {
        let mut c = Conn::new(s.port());
        let st = c.stat_map("");
        born.push(num(&st, "time") as i64 - num(&st, "uptime") as i64);
        assert_eq!(c.cmd("flush_all\r\n", &[b"OK\r\n"]), "OK\r\n");
        let oldest = num(&c.stat_map("settings"), "oldest") as i64;
        let uptime = num(&c.stat_map(""), "uptime") as i64;
        // Flushed at clock - 1; a second may tick between the reads.
        assert!(
            (58..=59).contains(&(oldest - uptime)),
            "{:?}: oldest {oldest}, uptime {uptime}",
            s.kind()
        );
    }
    // Started one after the other, within a second or so.
    assert!((born[0] - born[1]).abs() <= 1, "time - uptime: {born:?}");
}

#[test]
fn counters_move_as_commands_run() {
    let gn = Server::start(Kind::Gannet, &["-t", "2"]);
    let mut c = Conn::new(gn.port());
    let before = c.stat_map("");
    workload(&mut c);
    let after = c.stat_map("");
    let d = |k: &str| num(&after, k) - num(&before, k);
    assert_eq!(d("cmd_get"), 3);
    assert_eq!(d("get_hits"), 2);
    assert_eq!(d("get_misses"), 1);
    assert_eq!(d("cmd_set"), 2);
    assert_eq!(d("delete_hits"), 1);
    assert_eq!(d("incr_misses"), 1);
    assert_eq!(d("touch_hits"), 1);
    assert_eq!(d("cmd_touch"), 1);
    assert!(
        d("bytes_read") > 60,
        "bytes_read moved by {}",
        d("bytes_read")
    );
    assert!(d("bytes_written") > 40);
    assert_eq!(num(&after, "curr_items"), 1);
    // reset zeroes counters, not gauges.
    assert_eq!(c.cmd("stats reset\r\n", &[b"RESET\r\n"]), "RESET\r\n");
    let reset = c.stat_map("");
    assert_eq!(num(&reset, "cmd_get"), 0);
    assert_eq!(num(&reset, "curr_items"), 1);
    let lat = c.stat_map("latency");
    assert_eq!(num(&lat, "get:count"), 0, "stats reset clears latency");
}

/// Does a watch stream line have memcached's shape: `ts=S.U gid=N type=T`
/// then `key=value` pairs with exactly these keys?
fn check_line(line: &str, ty: &str, keys: &[&str]) -> HashMap<String, String> {
    let mut parts = line.split(' ');
    let ts = parts.next().unwrap().strip_prefix("ts=").expect(line);
    let (s, us) = ts.split_once('.').expect(line);
    assert!(s.parse::<u64>().unwrap() > 1_600_000_000, "{line}");
    assert!(us.parse::<u32>().unwrap() < 1_000_000, "{line}");
    let gid = parts.next().unwrap().strip_prefix("gid=").expect(line);
    assert!(gid.parse::<u64>().is_ok(), "{line}");
    assert_eq!(parts.next(), Some(format!("type={ty}").as_str()), "{line}");
    let kv: Vec<(String, String)> = parts
        .map(|p| {
            let (k, v) = p.split_once('=').expect(line);
            (k.to_string(), v.to_string())
        })
        .collect();
    assert_eq!(
        kv.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        keys,
        "{line}"
    );
    kv.into_iter().collect()
}

/// The watch lines of the same commands on both servers, by type.
fn watch_session(port: u16, kinds: &str, run: &[(&str, &str)]) -> Vec<String> {
    let mut w = Conn::new(port);
    assert_eq!(w.cmd(&format!("watch {kinds}\r\n"), &[b"\r\n"]), "OK\r\n");
    std::thread::sleep(Duration::from_millis(50));
    {
        let mut c = Conn::new(port);
        for (cmd, end) in run {
            let r = c.cmd(cmd, &[end.as_bytes()]);
            assert!(r.ends_with(end), "{cmd:?}: {r:?}");
        }
    }
    w.lines_for(Duration::from_millis(400))
}

#[test]
fn watch_streams_fetchers_mutations_and_connevents_like_memcached() {
    let run: &[(&str, &str)] = &[
        ("set foo 0 0 3\r\nbar\r\n", "STORED\r\n"),
        ("get foo\r\n", "END\r\n"),
        ("get nope\r\n", "END\r\n"),
        ("add foo 0 0 1\r\nx\r\n", "NOT_STORED\r\n"),
        ("get \x01k\r\n", "END\r\n"),
    ];
    let mc = Server::start(Kind::Memcached, &[]);
    let gn = Server::start(Kind::Gannet, &[]);
    let m = watch_session(mc.port(), "fetchers mutations connevents", run);
    let g = watch_session(gn.port(), "fetchers mutations connevents", run);
    let get_keys = ["key", "status", "clsid", "cfd", "size"];
    let store_keys = ["key", "status", "cmd", "ttl", "clsid", "cfd", "size"];
    for lines in [&m, &g] {
        // memcached also logs the lookups a store makes; compare the
        // events both servers log: every item_get of a get, every store.
        let gets: Vec<_> = lines
            .iter()
            .filter(|l| l.contains("type=item_get"))
            .map(|l| check_line(l, "item_get", &get_keys))
            .filter(|kv| kv["key"] != "foo" || kv["status"] == "found")
            .map(|kv| (kv["key"].clone(), kv["status"].clone(), kv["size"].clone()))
            .collect();
        assert!(
            gets.contains(&("foo".into(), "found".into(), "3".into())),
            "{lines:?}"
        );
        assert!(gets.contains(&("nope".into(), "not_found".into(), "0".into())));
        assert!(gets.contains(&("%01k".into(), "not_found".into(), "0".into())));
        let stores: Vec<_> = lines
            .iter()
            .filter(|l| l.contains("type=item_store"))
            .map(|l| check_line(l, "item_store", &store_keys))
            .map(|kv| (kv["key"].clone(), kv["status"].clone(), kv["cmd"].clone()))
            .collect();
        assert_eq!(
            stores,
            vec![
                ("foo".into(), "stored".into(), "set".into()),
                ("foo".into(), "not_stored".into(), "add".into())
            ]
        );
        let new = lines
            .iter()
            .find(|l| l.contains("type=conn_new"))
            .expect("conn_new");
        let kv = check_line(new, "conn_new", &["rip", "rport", "transport", "cfd"]);
        assert_eq!(
            (kv["rip"].as_str(), kv["transport"].as_str()),
            ("127.0.0.1", "tcp")
        );
        let close = lines
            .iter()
            .find(|l| l.contains("type=conn_close"))
            .expect("conn_close");
        let kv2 = check_line(
            close,
            "conn_close",
            &["rip", "rport", "transport", "reason", "cfd"],
        );
        assert_eq!(kv2["reason"], "normal");
        assert_eq!(kv2["cfd"], kv["cfd"]);
    }
    // Only the kinds asked for.
    let only = watch_session(gn.port(), "mutations", run);
    assert!(
        !only.is_empty() && only.iter().all(|l| l.contains("type=item_store")),
        "{only:?}"
    );
}

#[test]
fn watch_deletions_and_replies() {
    let gn = Server::start(Kind::Gannet, &[]);
    let lines = watch_session(
        gn.port(),
        "deletions",
        &[
            ("set d 0 0 1\r\nx\r\n", "STORED\r\n"),
            ("delete d\r\n", "DELETED\r\n"),
            ("delete d\r\n", "NOT_FOUND\r\n"),
        ],
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    let kv = check_line(&lines[0], "deleted", &["key", "cmd", "clsid", "size"]);
    assert_eq!((kv["key"].as_str(), kv["cmd"].as_str()), ("d", "delete"));
    // Replies memcached gives: unknown kind, and -W.
    let mut c = Conn::new(gn.port());
    assert_eq!(c.cmd("watch bogus\r\n", &[b"\r\n"]), "ERROR\r\n");
    let off = Server::start(Kind::Gannet, &["-W"]);
    let mc = Server::start(Kind::Memcached, &["-W"]);
    let a = Conn::new(off.port()).cmd("watch fetchers\r\n", &[b"\r\n"]);
    let b = Conn::new(mc.port()).cmd("watch fetchers\r\n", &[b"\r\n"]);
    assert_eq!(a, b);
    assert_eq!(a, "CLIENT_ERROR watch commands not allowed\r\n");
    // The watcher count follows watchers coming and going.
    let mut w = Conn::new(gn.port());
    assert_eq!(w.cmd("watch\r\n", &[b"\r\n"]), "OK\r\n");
    assert_eq!(num(&c.stat_map(""), "log_watchers"), 1);
    drop(w);
    let deadline = Instant::now() + Duration::from_secs(3);
    while num(&c.stat_map(""), "log_watchers") != 0 {
        assert!(Instant::now() < deadline, "watcher never went away");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Send a batch of 100 gets and wait for their 100 replies.
fn get_batch(c: &mut Conn, batch: &str) {
    c.send(batch.as_bytes());
    let mut n = 0;
    while n < 100 {
        let got = c.read_until(&[b"END\r\n".as_slice()]);
        assert!(!got.is_empty(), "server stopped answering");
        n += got.windows(5).filter(|w| *w == b"END\r\n").count();
    }
}

/// `-o worker_logbuf_size` sizes each worker's ring for a watcher: a batch
/// of gets whose lines (about 30 KB) fit the default 64 KB arrives whole,
/// while with 4 KB some is skipped, even for a watcher that reads.
/// One worker, so nothing drains the ring while a read's requests run.
#[test]
fn worker_logbuf_size_bounds_what_a_batch_may_log() {
    let key = "k".repeat(240);
    let batch: String = (0..100).map(|_| format!("get {key}\r\n")).collect();
    let skipped_with = |extra: &[&str]| {
        let mut args = vec!["-t", "1"];
        args.extend_from_slice(extra);
        let gn = Server::start(Kind::Gannet, &args);
        let mut w = Conn::new(gn.port());
        assert_eq!(w.cmd("watch fetchers\r\n", &[b"\r\n"]), "OK\r\n");
        let mut c = Conn::new(gn.port());
        get_batch(&mut c, &batch);
        let lines = w.lines_for(Duration::from_millis(500));
        let items = lines.iter().filter(|l| l.contains("type=item_get")).count();
        let s = c.stat_map("");
        let skipped = num(&s, "log_watcher_skipped");
        assert_eq!(items as u64 + skipped, 100, "{lines:?}");
        skipped
    };
    assert_eq!(skipped_with(&[]), 0);
    let small = skipped_with(&["-o", "worker_logbuf_size=4"]);
    // How many depends on how the batch is split into reads (the watcher
    // drains between them); 4 KB holds about 13 lines.
    assert!(small > 0, "none of 100 skipped with a 4 KB ring");
}

/// A watcher that never reads is skipped: the workers keep their pace and
/// `log_watcher_skipped` counts what it lost.
#[test]
fn slow_watcher_is_skipped_not_waited_for() {
    let gn = Server::start(Kind::Gannet, &[]);
    // A watcher with a small receive buffer, so the kernel cannot absorb
    // the whole stream for it.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", gn.port()).parse().unwrap();
    sock.connect(&addr.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut w = Conn { s };
    assert_eq!(w.cmd("watch fetchers\r\n", &[b"\r\n"]), "OK\r\n");
    let mut c = Conn::new(gn.port());
    let key = "k".repeat(240);
    let batch: String = (0..100).map(|_| format!("get {key}\r\n")).collect();
    let rounds = 400;
    let start = Instant::now();
    for _ in 0..rounds {
        get_batch(&mut c, &batch);
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "{} gets took {took:?}",
        rounds * 100
    );
    let s = c.stat_map("");
    let (sent, skipped) = (num(&s, "log_watcher_sent"), num(&s, "log_watcher_skipped"));
    assert!(skipped > 0, "{s:?}");
    assert!(sent > 0);
    assert_eq!(sent + skipped, rounds as u64 * 100);
    // Once it reads everything, the watcher has been told exactly what it
    // missed: every line it was sent arrives, and the `skipped=N` notes
    // (sent whenever the ring has room again, possibly several times
    // during the run) add up to the skipped count. A pending note goes out
    // before the next line.
    // (Read until the stream is quiet: on a loaded machine the backlog
    // can take a while to arrive.)
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut raw = Vec::new();
    loop {
        let more = w.bytes_for(Duration::from_millis(500));
        if more.is_empty() {
            break;
        }
        raw.extend(more);
        assert!(Instant::now() < deadline, "the watch stream never drained");
    }
    c.cmd("get after\r\n", &[b"END\r\n"]);
    raw.extend(w.bytes_for(Duration::from_millis(300)));
    let text = String::from_utf8_lossy(&raw);
    let lines: Vec<&str> = text.lines().collect();
    let notes: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("skipped="))
        .map(|n| n.parse().unwrap())
        .collect();
    let items = lines.iter().filter(|l| l.contains("type=item_get")).count();
    assert_eq!(notes.iter().sum::<u64>(), skipped, "notes {notes:?}");
    assert_eq!(items as u64, sent + 1, "{} lines in all", lines.len());
    assert!(
        lines.last().unwrap().contains("key=after"),
        "{:?}",
        &lines[lines.len().saturating_sub(3)..]
    );
}

/// A server process whose stderr lines arrive on a channel.
struct Logged {
    child: std::process::Child,
    port: u16,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Logged {
    fn start(program: &str, extra: &[&str]) -> Logged {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut args = vec![
            "-p".to_string(),
            port.to_string(),
            "-l".into(),
            "127.0.0.1".into(),
            "-U".into(),
            "0".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            args.extend(["-u".to_string(), "nobody".to_string()]);
        }
        let mut child = Command::new(program)
            .args(&args)
            .env_remove("GANNET_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Logged {
            child,
            port,
            lines: rx,
        }
    }

    fn connect(&self) -> Conn {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                return Conn { s };
            }
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every line logged so far (waiting `quiet` for stragglers).
    fn drain(&self, quiet: Duration) -> Vec<String> {
        let mut v = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(quiet) {
            v.push(l);
        }
        v
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn verbose_logs_requests_and_replies() {
    let g = Logged::start(env!("CARGO_BIN_EXE_gannet"), &["-vv"]);
    let mut c = g.connect();
    c.cmd("set vv 0 0 2\r\nhi\r\n", &[b"STORED\r\n"]);
    c.cmd("get vv\r\n", &[b"END\r\n"]);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let want = ["get vv", "sending key vv", "END", "set vv 0 0 2", "STORED"];
    while Instant::now() < deadline
        && !want
            .iter()
            .all(|w| seen.iter().any(|l: &String| l.ends_with(w)))
    {
        if let Ok(l) = g.lines.recv_timeout(Duration::from_millis(100)) {
            seen.push(l);
        }
    }
    for w in want {
        let hit = seen.iter().find(|l| l.ends_with(w));
        let hit = hit.unwrap_or_else(|| panic!("no -vv line ending {w:?} in {seen:?}"));
        // `<fd request` and `>fd reply`, as memcached prints them.
        let marker = if w.starts_with("get") || w.starts_with("set") {
            '<'
        } else {
            '>'
        };
        assert!(hit.starts_with(marker), "{hit}");
        let (fd, _) = hit[1..].split_once(' ').unwrap();
        assert!(fd.parse::<i32>().is_ok(), "{hit}");
    }
}

/// `verbosity` switches the `-vv` log at run time, on a server started
/// without `-v`: the same lines as memcached's, request by request, from
/// the `OK` of `verbosity 2` to the `verbosity 0` line, then nothing.
#[test]
fn verbosity_switches_the_log_at_run_time_like_memcached() {
    let run = |program: &str| -> Vec<String> {
        let server = Logged::start(program, &[]);
        let mut c = server.connect();
        for (req, end) in [
            ("get before\r\n", "END\r\n"),
            ("verbosity 2\r\n", "OK\r\n"),
            ("set foo 0 0 3\r\nbar\r\n", "STORED\r\n"),
            ("get foo nope\r\n", "END\r\n"),
            ("gets foo\r\n", "END\r\n"),
            ("delete foo\r\n", "DELETED\r\n"),
            ("mg foo v\r\n", "EN\r\n"),
            ("ms foo 2 T10\r\nhi\r\n", "HD\r\n"),
            ("mg foo v s\r\n", "hi\r\n"),
            ("mn\r\n", "MN\r\n"),
            ("incr nope 1\r\n", "NOT_FOUND\r\n"),
            ("bogus\r\n", "ERROR\r\n"),
            ("set q 0 0 1 noreply\r\nx\r\nmn\r\n", "MN\r\n"),
            ("verbosity 1\r\n", "OK\r\n"),
            ("get foo\r\n", "END\r\n"),
            ("verbosity 2 noreply\r\nmn\r\n", "MN\r\n"),
            ("get foo\r\n", "END\r\n"),
            ("verbosity 0\r\n", "OK\r\n"),
            ("get foo\r\n", "END\r\n"),
            ("set foo 0 0 1\r\nx\r\n", "STORED\r\n"),
        ] {
            let r = c.cmd(req, &[end.as_bytes()]);
            assert!(r.ends_with(end), "{program}: {req:?} -> {r:?}");
        }
        server
            .drain(Duration::from_millis(300))
            .into_iter()
            // Descriptor numbers differ between the servers.
            .map(|l| match l.split_once(' ') {
                Some((head, rest)) if head.get(1..).is_some_and(|d| d.parse::<u32>().is_ok()) => {
                    format!("{}N {rest}", &head[..1])
                }
                _ => l,
            })
            .collect()
    };
    let got = run(env!("CARGO_BIN_EXE_gannet"));
    common::require_file(common::MEMCACHED);
    let want = run(common::MEMCACHED);
    assert_eq!(got, want);
    // What that means, spelled out.
    assert_eq!(got.first().map(String::as_str), Some(">N OK"));
    assert!(got.contains(&"<N set foo 0 0 3".to_string()));
    assert!(got.contains(&">N NOREPLY STORED".to_string()));
    assert!(got.contains(&">N NOREPLY OK".to_string()));
    assert_eq!(got.last().map(String::as_str), Some("<N verbosity 0"));
}

#[test]
fn latency_counts_match_requests_sent() {
    let gn = Server::start(Kind::Gannet, &["-t", "2"]);
    let mut c = Conn::new(gn.port());
    for i in 0..37 {
        c.cmd(&format!("set k{i} 0 0 1\r\nx\r\n"), &[b"STORED\r\n"]);
    }
    for i in 0..50 {
        c.cmd(&format!("get k{i}\r\n"), &[b"END\r\n"]);
    }
    // A pipelined batch counts each request.
    let batch: String = (0..20).map(|i| format!("delete k{i}\r\n")).collect();
    c.send(batch.as_bytes());
    let mut got = Vec::new();
    while got.windows(2).filter(|w| *w == b"\r\n").count() < 20 {
        got.extend(c.read_until(&[b"\r\n".as_slice()]));
    }
    c.cmd("incr k30 1\r\n", &[b"\r\n"]);
    c.cmd("touch k31 10\r\n", &[b"\r\n"]);
    c.cmd("mn\r\n", &[b"MN\r\n"]);
    let lat = c.stat_map("latency");
    assert_eq!(num(&lat, "set:count"), 37);
    assert_eq!(num(&lat, "get:count"), 50);
    assert_eq!(num(&lat, "delete:count"), 20);
    assert_eq!(num(&lat, "arith:count"), 1);
    assert_eq!(num(&lat, "touch:count"), 1);
    assert_eq!(num(&lat, "meta:count"), 1);
    let us = |k: &str| lat[k].parse::<f64>().unwrap();
    for f in ["get", "set", "delete"] {
        let (p50, p99, max) = (
            us(&format!("{f}:p50_us")),
            us(&format!("{f}:p99_us")),
            us(&format!("{f}:max_us")),
        );
        assert!(
            p50 > 0.0 && p50 <= p99 && p99 <= max,
            "{f}: {p50} {p99} {max}"
        );
        assert!(max < 1_000_000.0, "{f} max {max} us");
    }
    // Off: nothing more is counted.
    assert_eq!(c.cmd("stats latency off\r\n", &[b"\r\n"]), "OK\r\n");
    c.cmd("get k1\r\n", &[b"END\r\n"]);
    assert_eq!(num(&c.stat_map("latency"), "get:count"), 50);
    assert_eq!(c.cmd("stats latency on\r\n", &[b"\r\n"]), "OK\r\n");
}

#[test]
fn hotkeys_finds_the_hot_key_of_a_skewed_workload() {
    let off = Server::start(Kind::Gannet, &[]);
    assert_eq!(
        Conn::new(off.port()).stats("hotkeys"),
        vec![("hotkeys_status".to_string(), "disabled".to_string())]
    );
    let gn = Server::start(Kind::Gannet, &["-t", "2", "-o", "hotkeys=3"]);
    let mut conns: Vec<Conn> = (0..2).map(|_| Conn::new(gn.port())).collect();
    let mut x: u64 = 7;
    for round in 0..40 {
        let mut batch = String::new();
        for _ in 0..100 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (x >> 33) % 100;
            let key = if r < 30 {
                "user:hot".to_string()
            } else if r < 45 {
                "user:warm".to_string()
            } else {
                format!("user:{}", (x >> 40) % 5000)
            };
            batch.push_str(&format!("get {key}\r\n"));
        }
        let c = &mut conns[round % 2];
        c.send(batch.as_bytes());
        let mut n = 0;
        while n < 100 {
            let got = c.read_until(&[b"END\r\n".as_slice()]);
            assert!(!got.is_empty(), "no reply");
            n += got.windows(5).filter(|w| *w == b"END\r\n").count();
        }
    }
    let hk = conns[0].stat_map("hotkeys");
    assert_eq!(hk["hotkeys_status"], "enabled");
    assert_eq!(hk["hotkey:1:key"], "user:hot", "{hk:?}");
    assert_eq!(hk["hotkey:2:key"], "user:warm", "{hk:?}");
    // 4000 gets, about 1200 of the hot key; sampled 1 in 32.
    let est = num(&hk, "hotkey:1:count");
    assert!((500..=1800).contains(&est), "estimate {est}");
    assert!(!hk.contains_key("hotkey:4:key"), "top 3 only");
}

// ---- /metrics ----

/// One sample of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn valid_name(n: &str) -> bool {
    let mut ch = n.chars();
    matches!(ch.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && ch.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A strict parser of the text exposition format (version 0.0.4): every
/// line is a HELP, a TYPE, or a sample; a sample's family was declared by
/// TYPE before it; families are contiguous; label values are escaped.
fn parse_exposition(body: &str) -> Vec<Sample> {
    assert!(body.ends_with('\n'), "body must end with a newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, ()> = HashMap::new();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut out = Vec::new();
    for (i, line) in body.lines().enumerate() {
        let ctx = format!("line {}: {line:?}", i + 1);
        assert!(!line.is_empty(), "{ctx}: empty line");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect(&ctx);
            assert!(valid_name(name), "{ctx}");
            assert!(!help.is_empty(), "{ctx}");
            assert!(
                helps.insert(name.to_string(), ()).is_none(),
                "{ctx}: HELP twice"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect(&ctx);
            assert!(valid_name(name), "{ctx}");
            assert!(
                ["counter", "gauge", "summary", "histogram", "untyped"].contains(&ty),
                "{ctx}"
            );
            assert!(
                types.insert(name.to_string(), ty.to_string()).is_none(),
                "{ctx}: TYPE twice"
            );
            assert!(!finished.contains(&name.to_string()), "{ctx}");
            if let Some(c) = current.take() {
                finished.push(c);
            }
            current = Some(name.to_string());
            continue;
        }
        assert!(!line.starts_with('#'), "{ctx}: unknown comment");
        // name{labels} value
        let (name_labels, value) = line.rsplit_once(' ').expect(&ctx);
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("{ctx}: bad value")),
        };
        let (name, labels) = match name_labels.split_once('{') {
            None => (name_labels, Vec::new()),
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').expect(&ctx);
                let mut labels = Vec::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let mut k = String::new();
                    for c in chars.by_ref() {
                        if c == '=' {
                            break;
                        }
                        k.push(c);
                    }
                    assert!(valid_name(&k) && !k.contains(':'), "{ctx}: label {k:?}");
                    assert_eq!(chars.next(), Some('"'), "{ctx}");
                    let mut v = String::new();
                    loop {
                        match chars.next().expect(&ctx) {
                            '\\' => match chars.next().expect(&ctx) {
                                'n' => v.push('\n'),
                                '\\' => v.push('\\'),
                                '"' => v.push('"'),
                                c => panic!("{ctx}: bad escape \\{c}"),
                            },
                            '"' => break,
                            c => v.push(c),
                        }
                    }
                    labels.push((k, v));
                    match chars.next() {
                        None => break,
                        Some(',') => {}
                        Some(c) => panic!("{ctx}: unexpected {c:?}"),
                    }
                }
                (n, labels)
            }
        };
        assert!(valid_name(name), "{ctx}");
        let family = current.clone().expect(&ctx);
        let ty = &types[&family];
        let ok = name == family
            || (ty == "summary"
                && (name == format!("{family}_count") || name == format!("{family}_sum")));
        assert!(ok, "{ctx}: sample outside its family {family}");
        if ty == "counter" || name.ends_with("_count") {
            assert!(value >= 0.0, "{ctx}");
        }
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    for t in types.keys() {
        assert!(helps.contains_key(t), "{t} has no HELP");
    }
    out
}

fn http_get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read response");
    let (head, body) = resp.split_once("\r\n\r\n").expect("http head");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("content-length")
        .parse()
        .unwrap();
    assert_eq!(body.len(), len, "content-length");
    (head.to_string(), body.to_string())
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
        .value
}

#[test]
fn metrics_endpoint_is_valid_and_equals_stats() {
    let mport = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let opt = format!("hotkeys=4,metrics_listen=127.0.0.1:{mport}");
    let gn = Server::start(Kind::Gannet, &["-o", &opt]);
    let mut c = Conn::new(gn.port());
    workload(&mut c);
    for _ in 0..64 {
        c.cmd("get b:2\r\n", &[b"END\r\n"]);
    }
    // A batch's latency is recorded just after its reply is written, so
    // the last get's may not be in yet when its reply arrives. The worker
    // reads this request only after it has recorded that one.
    c.cmd("version\r\n", &[b"\r\n"]);
    let (head, body) = http_get(mport, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let samples = parse_exposition(&body);
    let s = c.stat_map("");
    let slabs = c.stat_map("slabs");
    let items = c.stat_map("items");
    let lat = c.stat_map("latency");
    let eq = |metric: &str, labels: &[(&str, &str)], stat: u64| {
        assert_eq!(
            value(&samples, metric, labels),
            stat as f64,
            "{metric} {labels:?}"
        );
    };
    eq("memcached_up", &[], 1);
    eq("memcached_current_items", &[], num(&s, "curr_items"));
    eq("memcached_items_total", &[], num(&s, "total_items"));
    eq("memcached_items_evicted_total", &[], num(&s, "evictions"));
    eq("memcached_current_bytes", &[], num(&s, "bytes"));
    eq("memcached_limit_bytes", &[], num(&s, "limit_maxbytes"));
    eq(
        "memcached_connections_total",
        &[],
        num(&s, "total_connections"),
    );
    eq(
        "memcached_current_connections",
        &[],
        num(&s, "curr_connections"),
    );
    eq("memcached_max_connections", &[], num(&s, "max_connections"));
    eq(
        "memcached_commands_total",
        &[("command", "get"), ("status", "hit")],
        num(&s, "get_hits"),
    );
    eq(
        "memcached_commands_total",
        &[("command", "get"), ("status", "miss")],
        num(&s, "get_misses"),
    );
    eq(
        "memcached_commands_total",
        &[("command", "set"), ("status", "hit")],
        num(&s, "cmd_set"),
    );
    eq(
        "memcached_commands_total",
        &[("command", "delete"), ("status", "hit")],
        num(&s, "delete_hits"),
    );
    eq(
        "memcached_commands_total",
        &[("command", "incr"), ("status", "miss")],
        num(&s, "incr_misses"),
    );
    eq(
        "memcached_commands_total",
        &[("command", "touch"), ("status", "hit")],
        num(&s, "touch_hits"),
    );
    assert!(value(&samples, "memcached_uptime_seconds", &[]) <= num(&s, "uptime") as f64);
    // bytes_read grows with every request (the stats call itself): the
    // scrape saw what was read before it.
    assert!(value(&samples, "memcached_read_bytes_total", &[]) <= num(&s, "bytes_read") as f64);
    assert!(value(&samples, "memcached_read_bytes_total", &[]) > 0.0);
    let v = samples
        .iter()
        .find(|x| x.name == "memcached_version")
        .unwrap();
    assert_eq!(v.labels[0], ("version".to_string(), s["version"].clone()));
    // Per slab: the class the items live in.
    let (class, _) = slabs
        .keys()
        .find(|k| k.ends_with(":used_chunks"))
        .unwrap()
        .split_once(':')
        .unwrap();
    let sl = [("slab", class)];
    eq(
        "memcached_slab_chunks_used",
        &sl,
        num(&slabs, &format!("{class}:used_chunks")),
    );
    eq(
        "memcached_slab_chunk_size_bytes",
        &sl,
        num(&slabs, &format!("{class}:chunk_size")),
    );
    eq(
        "memcached_slab_current_items",
        &sl,
        num(&items, &format!("items:{class}:number")),
    );
    eq(
        "memcached_slab_commands_total",
        &[("slab", class), ("command", "get"), ("status", "hit")],
        num(&slabs, &format!("{class}:get_hits")),
    );
    // Latency and hot keys.
    let gets = value(
        &samples,
        "gannet_request_duration_seconds_count",
        &[("family", "get")],
    );
    assert!(
        gets >= 65.0 && gets <= num(&lat, "get:count") as f64,
        "{gets}"
    );
    let p50 = value(
        &samples,
        "gannet_request_duration_seconds",
        &[("family", "get"), ("quantile", "0.5")],
    );
    assert!(p50 > 0.0 && p50 < 1.0, "{p50}");
    let hot = samples
        .iter()
        .find(|x| x.name == "gannet_hotkey_accesses")
        .expect("hot keys");
    assert!(
        hot.labels.contains(&("key".to_string(), "b:2".to_string())),
        "{hot:?}"
    );
    // Every TYPE'd family has samples; other paths answer 404.
    let (head404, _) = http_get(mport, "/nope");
    assert!(head404.starts_with("HTTP/1.1 404"), "{head404}");
}

#[test]
fn text_format_checker_rejects_bad_exposition() {
    for bad in [
        "x 1\n",                                    // no TYPE
        "# TYPE x gauge\nx 1\n",                    // no HELP
        "# HELP x h\n# TYPE x gauge\nx{a=\"b} 1\n", // unterminated
        "# HELP x h\n# TYPE x gauge\nx one\n",      // bad value
        "# HELP x h\n# TYPE x gauge\ny 1\n",        // outside family
    ] {
        let r = std::panic::catch_unwind(|| parse_exposition(bad));
        assert!(r.is_err(), "accepted {bad:?}");
    }
    let ok = parse_exposition("# HELP x h\n# TYPE x gauge\nx{a=\"q\\\"\"} 1.5\n");
    assert_eq!(ok[0].labels[0].1, "q\"");
}

/// `watch evictions`: the store's evictions reach the watcher, with the
/// fields memcached's eviction lines carry.
#[test]
fn watch_evictions_has_memcached_fields() {
    let fill: Vec<(String, String)> = (0..160)
        .map(|i| {
            (
                format!("set ev{i} 0 0 100000\r\n{}\r\n", "v".repeat(100_000)),
                "STORED\r\n".to_string(),
            )
        })
        .collect();
    let run: Vec<(&str, &str)> = fill.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let field_names = |kind: Kind| -> Vec<String> {
        let s = Server::start(kind, &["-m", "8"]);
        let lines = watch_session(s.port(), "evictions", &run);
        let first = lines
            .iter()
            .find(|l| l.contains("type=eviction"))
            .unwrap_or_else(|| panic!("{}: no eviction line in {lines:?}", kind.name()))
            .clone();
        first
            .split(' ')
            .skip(3)
            .map(|p| p.split_once('=').expect(&first).0.to_string())
            .collect()
    };
    let want = field_names(Kind::Memcached);
    let got = field_names(Kind::Gannet);
    assert_eq!(got, want, "eviction line fields differ from memcached's");
}

/// `watch sysevents`: a page the automover moves shows up as memcached's
/// `type=slab_move src=<class> dst=<class>` line. memcached's automover
/// needs its 30 s window before it moves anything, so only gannet is
/// driven here; the line format is memcached's `LOGGER_SLAB_MOVE`.
#[test]
fn watch_sysevents_shows_page_moves() {
    let small = "s".repeat(100);
    let big = "b".repeat(5000);
    let mut fill: Vec<(String, String)> = (0..60_000)
        .map(|i| {
            (
                format!("set s{i} 0 0 100\r\n{small}\r\n"),
                "STORED\r\n".to_string(),
            )
        })
        .collect();
    fill.extend((0..1500).map(|i| {
        (
            format!("set b{i} 0 0 5000\r\n{big}\r\n"),
            "STORED\r\n".to_string(),
        )
    }));
    let run: Vec<(&str, &str)> = fill.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let s = Server::start(Kind::Gannet, &["-m", "8"]);
    let lines = watch_session(s.port(), "sysevents", &run);
    let moves: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("type=slab_move"))
        .collect();
    assert!(!moves.is_empty(), "no slab_move line in {lines:?}");
    let mut c = Conn::new(s.port());
    let moved = c.cmd("stats\r\n", &[b"END\r\n"]);
    assert!(!moved.contains("STAT slabs_moved 0\r\n"), "{moved}");
    for l in moves {
        let parts: Vec<&str> = l.split(' ').collect();
        assert_eq!(parts.len(), 5, "{l}");
        assert!(
            parts[0].starts_with("ts=") && parts[1].starts_with("gid="),
            "{l}"
        );
        assert_eq!(parts[2], "type=slab_move", "{l}");
        let class = |p: &str, name: &str| -> u32 {
            p.strip_prefix(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{l}"))
        };
        let (src, dst) = (class(parts[3], "src="), class(parts[4], "dst="));
        assert!(src >= 1 && dst >= 1 && src != dst, "{l}");
    }
}

/// `watch sysevents` while the automover gives a quiet class's spare
/// pages back to the pool (a window of 3 checks, so memcached acts within
/// seconds too): both servers log `type=slab_move src=<class> dst=0`
/// lines, all from the class that was thinned out: gannet one per page
/// moved, memcached one per move it asked for (at least one per page).
#[test]
fn watch_sysevents_shows_pages_going_back_to_the_pool_like_memcached() {
    let value = "v".repeat(1000);
    let mut batch = String::new();
    for i in 0..20_000 {
        batch += &format!("set k{i} 0 0 1000 noreply\r\n{value}\r\n");
    }
    for i in (0..20_000).filter(|i| i % 10 != 0) {
        batch += &format!("delete k{i} noreply\r\n");
    }
    batch += "mn\r\n";
    let moves = |kind: Kind| -> Vec<Vec<String>> {
        let s = Server::start(kind, &["-m", "64", "-o", "slab_automove_window=3"]);
        let mut w = Conn::new(s.port());
        assert_eq!(w.cmd("watch sysevents\r\n", &[b"\r\n"]), "OK\r\n");
        let mut c = Conn::new(s.port());
        assert_eq!(c.cmd(&batch, &[b"MN\r\n"]), "MN\r\n");
        let lines = w.lines_for(Duration::from_secs(8));
        let moved = num(&c.stat_map(""), "slabs_moved");
        let moves: Vec<Vec<String>> = lines
            .iter()
            .filter(|l| l.contains("type=slab_move"))
            .map(|l| l.split(' ').skip(2).map(str::to_string).collect())
            .collect();
        let name = kind.name();
        assert!(moved > 0, "{name}: nothing moved");
        // memcached's maintainer logs the line for every move it asks for,
        // also when slabs_reassign answers RUNNING because the mover has
        // not finished the previous page (seen on a loaded machine: 22
        // lines, 19 moves); gannet logs each page it moved.
        match kind {
            Kind::Memcached => assert!(moves.len() as u64 >= moved, "{name}: {lines:?}"),
            Kind::Gannet => assert_eq!(moves.len() as u64, moved, "{name}: {lines:?}"),
        }
        moves
    };
    let m = moves(Kind::Memcached);
    let g = moves(Kind::Gannet);
    for (name, lines) in [("memcached", &m), ("gannet", &g)] {
        for l in lines.iter() {
            assert_eq!(l.len(), 3, "{name}: {l:?}");
            assert_eq!(l[0], "type=slab_move", "{name}");
            assert_eq!(l[1], lines[0][1], "{name}: pages from two classes");
            assert!(l[1].starts_with("src=") && l[1] != "src=0", "{name}");
            assert_eq!(l[2], "dst=0", "{name}");
        }
    }
}

/// One request of the watch comparison: a text line (with its data
/// block) or a binary packet.
#[derive(Clone, Copy)]
enum Req {
    Text(&'static str),
    /// opcode, key, extras, value, CAS
    Bin(u8, &'static str, &'static [u8], &'static str, u64),
}

/// Binary extras: SET/ADD/REPLACE (flags, exptime), INCR/DECR (delta,
/// initial, exptime), TOUCH/GAT (exptime).
const X_STORE: &[u8] = &[0, 0, 0, 0, 0, 0, 0, 0];
const X_STORE_TTL100: &[u8] = &[0, 0, 0, 0, 0, 0, 0, 100];
const X_ARITH_CREATE: &[u8] = &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 10];
const X_ARITH_NOCREATE: &[u8] = &[
    0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff,
];
const X_TOUCH: &[u8] = &[0, 0, 0, 100];

/// Every command that fetches, stores or deletes, in both protocols.
const WATCH_TABLE: &[Req] = &[
    Req::Text("set foo 0 0 3\r\nbar\r\n"),
    Req::Text("set foo 0 0 4\r\nbarr\r\n"),
    Req::Text("get foo nope\r\n"),
    Req::Text("gets foo\r\n"),
    Req::Text("touch foo 100\r\n"),
    Req::Text("touch nope 100\r\n"),
    Req::Text("gat 100 foo nope\r\n"),
    Req::Text("gats 100 foo\r\n"),
    Req::Text("set n 0 0 2\r\n99\r\n"),
    Req::Text("incr n 3\r\n"),
    Req::Text("decr n 1\r\n"),
    Req::Text("incr nope 1\r\n"),
    Req::Text("incr foo 1\r\n"),
    Req::Text("append foo 0 0 2\r\nxy\r\n"),
    Req::Text("prepend foo 0 0 2\r\nab\r\n"),
    Req::Text("append nope 0 0 2\r\nxy\r\n"),
    Req::Text("cas foo 0 0 1 999\r\nz\r\n"),
    Req::Text("cas nope 0 0 1 999\r\nz\r\n"),
    Req::Text("cas foo 0 0 1 0\r\nz\r\n"),
    Req::Text("add foo 0 0 1\r\nx\r\n"),
    Req::Text("add new 0 0 1\r\nx\r\n"),
    Req::Text("replace nope 0 0 1\r\nx\r\n"),
    Req::Text("replace foo 0 100 1\r\nx\r\n"),
    Req::Text("delete foo\r\n"),
    Req::Text("delete foo\r\n"),
    Req::Text("set foo 0 0 4\r\nbarr\r\n"),
    Req::Text("mg foo v\r\n"),
    Req::Text("mg nope v\r\n"),
    Req::Text("mg foo s T30\r\n"),
    Req::Text("mg viv N30 s\r\n"),
    Req::Text("mg viv s\r\n"),
    Req::Text("ms foo 2\r\nhi\r\n"),
    Req::Text("ms nope 2 MR\r\nhi\r\n"),
    Req::Text("ms nope2 2 ME\r\nhi\r\n"),
    Req::Text("ms foo 2 MA\r\nhi\r\n"),
    Req::Text("ms foo 2 C999\r\nhi\r\n"),
    Req::Text("ms foo 1 C0\r\nz\r\n"),
    Req::Text("ms nope 1 C0\r\nz\r\n"),
    Req::Text("ms foo 1 MA C999\r\nz\r\n"),
    Req::Text("ms foo 2 T100 MS\r\nhi\r\n"),
    Req::Text("ms foo 2 I\r\nhi\r\n"),
    Req::Text("ms sq 2 q\r\nhi\r\n"),
    Req::Text("md foo\r\n"),
    Req::Text("md foo\r\n"),
    Req::Text("md sq q\r\n"),
    Req::Text("set foo 0 0 3\r\nbar\r\n"),
    Req::Text("md foo I T30\r\n"),
    Req::Text("mg foo s\r\n"),
    Req::Text("ma cnt\r\n"),
    Req::Text("set cnt 0 0 1\r\n5\r\n"),
    Req::Text("ma cnt\r\n"),
    Req::Text("ma cnt MD D2\r\n"),
    Req::Text("ma cr N30 J7\r\n"),
    Req::Text("ma foo\r\n"),
    Req::Text("me foo\r\n"),
    Req::Text("me nope\r\n"),
    Req::Bin(0x01, "bfoo", X_STORE, "bar", 0),
    Req::Bin(0x01, "bfoo", X_STORE_TTL100, "barr", 0),
    Req::Bin(0x00, "bfoo", &[], "", 0),
    Req::Bin(0x00, "bnope", &[], "", 0),
    Req::Bin(0x0c, "bfoo", &[], "", 0),
    Req::Bin(0x09, "bnope", &[], "", 0),
    Req::Bin(0x02, "bfoo", X_STORE, "x", 0),
    Req::Bin(0x02, "bnew", X_STORE, "x", 0),
    Req::Bin(0x03, "bnope", X_STORE, "x", 0),
    Req::Bin(0x03, "bfoo", X_STORE, "xyz", 0),
    Req::Bin(0x01, "bfoo", X_STORE, "x", 999),
    Req::Bin(0x02, "bfoo", X_STORE, "x", 999),
    Req::Bin(0x01, "bnope", X_STORE, "x", 999),
    Req::Bin(0x0e, "bfoo", &[], "ap", 0),
    Req::Bin(0x0f, "bfoo", &[], "pre", 0),
    Req::Bin(0x0e, "bnope", &[], "ap", 0),
    Req::Bin(0x0e, "bfoo", &[], "x", 999),
    Req::Bin(0x04, "bfoo", &[], "", 0),
    Req::Bin(0x04, "bfoo", &[], "", 0),
    Req::Bin(0x05, "bn", X_ARITH_CREATE, "", 0),
    Req::Bin(0x05, "bn", X_ARITH_CREATE, "", 0),
    Req::Bin(0x06, "bn", X_ARITH_CREATE, "", 0),
    Req::Bin(0x05, "bm", X_ARITH_NOCREATE, "", 0),
    Req::Bin(0x05, "bnew", X_ARITH_CREATE, "", 0),
    Req::Bin(0x1c, "bnew", X_TOUCH, "", 0),
    Req::Bin(0x1c, "bnope", X_TOUCH, "", 0),
    Req::Bin(0x1d, "bnew", X_TOUCH, "", 0),
    Req::Bin(0x23, "bnope", X_TOUCH, "", 0),
    Req::Bin(0x11, "bq", X_STORE, "quiet", 0),
    Req::Bin(0x14, "bq", &[], "", 0),
];

/// Opaque of the binary NOOP that closes each step.
const STEP_END: u32 = 0x5EED_0001;

/// Runs `table` with a watcher of `kinds` attached; for each request, the
/// watch lines it caused. After each request the client looks up a marker
/// key (one `item_get` line) and waits for a no-op's reply, so every line
/// before the marker's belongs to the request.
fn watch_per_request(port: u16, kinds: &str, table: &[Req]) -> Vec<Vec<String>> {
    let mut w = Conn::new(port);
    assert_eq!(w.cmd(&format!("watch {kinds}\r\n"), &[b"\r\n"]), "OK\r\n");
    let mut text = Conn::new(port);
    let mut bin = Conn::new(port);
    let mut pending = String::new();
    let mut out = Vec::new();
    for (i, req) in table.iter().enumerate() {
        let marker = format!("zzmark{i}");
        match *req {
            Req::Text(line) => {
                text.send(format!("{line}mg {marker}\r\nmn\r\n").as_bytes());
                let r = text.read_until(&[b"MN\r\n"]);
                assert!(r.ends_with(b"MN\r\n"), "{line:?}: {r:?}");
            }
            Req::Bin(op, key, extras, value, cas) => {
                let mut p = bin_packet(op, key.as_bytes(), extras, value.as_bytes(), cas, 7);
                p.extend(bin_packet(0x00, marker.as_bytes(), &[], &[], 0, 8));
                p.extend(bin_packet(0x0a, &[], &[], &[], 0, STEP_END));
                bin.send(&p);
                let mut end = bin_packet(0x0a, &[], &[], &[], 0, STEP_END);
                end[0] = 0x81;
                let r = bin.read_until(&[&end]);
                assert!(r.ends_with(&end), "binary {op:#x} {key}: {r:?}");
            }
        }
        // The watcher's lines up to the marker's.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut lines = Vec::new();
        loop {
            if let Some(nl) = pending.find('\n') {
                let line: String = pending.drain(..=nl).collect();
                let line = line.trim_end().to_string();
                if line.contains(&format!(" key={marker} ")) {
                    break;
                }
                lines.push(line);
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "request {i}: no marker line; got {lines:?}"
            );
            let mut buf = [0u8; 65536];
            if let Ok(n) = w.s.read(&mut buf) {
                pending.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
        out.push(lines);
    }
    out
}

/// A watch line with the parts that differ between two servers running
/// the same commands masked: the time, the global id, the descriptor.
fn normalise(line: &str) -> String {
    line.split(' ')
        .map(|p| match p.split_once('=') {
            Some(("ts" | "gid" | "cfd", _)) => format!("{}=*", p.split('=').next().unwrap()),
            _ => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Two normalised lines agree; a `ttl` may differ by the one second a
/// clock tick between two servers' runs can make.
fn same_line(a: &str, b: &str) -> bool {
    let (pa, pb): (Vec<_>, Vec<_>) = (a.split(' ').collect(), b.split(' ').collect());
    pa.len() == pb.len()
        && pa.iter().zip(&pb).all(|(x, y)| {
            x == y
                || match (x.strip_prefix("ttl="), y.strip_prefix("ttl=")) {
                    (Some(x), Some(y)) => {
                        let (x, y): (i64, i64) = (x.parse().unwrap(), y.parse().unwrap());
                        (x - y).abs() <= 1
                    }
                    _ => false,
                }
        })
}

/// `watch fetchers mutations`: every command that looks an item up logs
/// memcached's `item_get` line for it, every storage command (text, meta,
/// binary) its lookup and its `item_store` line, with the same fields and
/// values as memcached 1.6.18, request by request.
#[test]
fn watch_lines_of_every_command_match_memcached() {
    let mc = Server::start(Kind::Memcached, &[]);
    let gn = Server::start(Kind::Gannet, &[]);
    let want = watch_per_request(mc.port(), "fetchers mutations", WATCH_TABLE);
    let got = watch_per_request(gn.port(), "fetchers mutations", WATCH_TABLE);
    let mut stores = 0;
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        let (w, g): (Vec<_>, Vec<_>) = (
            w.iter().map(|l| normalise(l)).collect(),
            g.iter().map(|l| normalise(l)).collect(),
        );
        let req = match WATCH_TABLE[i] {
            Req::Text(l) => l.escape_debug().to_string(),
            Req::Bin(op, key, ..) => format!("binary {op:#04x} {key}"),
        };
        assert!(!w.is_empty(), "{req}: memcached logged nothing");
        assert!(
            w.len() == g.len() && w.iter().zip(&g).all(|(a, b)| same_line(a, b)),
            "{req}:\nmemcached: {w:#?}\ngannet:    {g:#?}"
        );
        stores += w.iter().filter(|l| l.contains("type=item_store")).count();
    }
    assert!(stores > 30, "the table must exercise stores: {stores}");
}

/// `watch deletions` (a later memcached's event, refused by 1.6.18): one
/// `deleted` line per item removed by text `delete`, meta `md` or binary
/// DELETE; none for misses or for `md` that keeps the item (`I`, `x`).
#[test]
fn watch_deletions_cover_every_protocol() {
    let gn = Server::start(Kind::Gannet, &[]);
    let table = [
        Req::Text("set a 0 0 3\r\nabc\r\n"),
        Req::Text("delete a\r\n"),
        Req::Text("delete a\r\n"),
        Req::Text("set b 0 0 2\r\nxy\r\n"),
        Req::Text("md b I\r\n"),
        Req::Text("md b x\r\n"),
        Req::Text("md b\r\n"),
        Req::Text("md b q\r\n"),
        Req::Bin(0x01, "c", X_STORE, "hello", 0),
        Req::Bin(0x14, "c", &[], "", 0),
        Req::Bin(0x04, "c", &[], "", 0),
    ];
    // (The step markers are fetches.)
    let got = watch_per_request(gn.port(), "fetchers deletions", &table);
    let shown: Vec<Vec<String>> = got
        .iter()
        .map(|ls| {
            ls.iter()
                .filter(|l| !l.contains("type=item_get"))
                .map(|l| normalise(l))
                .collect()
        })
        .collect();
    let del = |k: &str, cmd: &str, size: usize| {
        vec![format!(
            "ts=* gid=* type=deleted key={k} cmd={cmd} clsid=1 size={size}"
        )]
    };
    let none: Vec<String> = Vec::new();
    assert_eq!(
        shown,
        vec![
            none.clone(),
            del("a", "delete", 3),
            none.clone(),
            none.clone(),
            none.clone(),
            none.clone(),
            del("b", "md", 0),
            none.clone(),
            none.clone(),
            del("c", "delete", 5),
            none,
        ]
    );
}
