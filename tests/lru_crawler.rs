//! The item-walking commands against memcached 1.6.18: `lru_crawler
//! crawl`, `lru_crawler metadump` and `stats cachedump`.
//!
//! Every check runs on both servers and compares, step by step (one
//! round trip each, so memcached's crawler thread has started or stopped
//! by the next step). Metadump lines are compared by meaning: the key,
//! `fetch`, `cls` and `size` exactly; `exp` relative to the server's own
//! clock (±1 s); `la` within a few seconds of now; `cas` only for being a
//! number (the servers number items differently). The order of lines is
//! not compared: memcached walks LRUs, gannet its hash index.

mod common;

use common::{both, show, until, Client, Kind, Server};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Metadump lines by key, each reduced to what both servers must agree on.
fn dump_lines(reply: &[u8], who: &str) -> BTreeMap<String, String> {
    let text = std::str::from_utf8(reply).unwrap();
    assert!(text.ends_with("END\r\n"), "{who}: {text:?}");
    let now = unix_now();
    let mut out = BTreeMap::new();
    for line in text.strip_suffix("END\r\n").unwrap().split_terminator('\n') {
        let f: BTreeMap<&str, &str> = line
            .split(' ')
            .map(|kv| {
                kv.split_once('=')
                    .unwrap_or_else(|| panic!("{who}: {line:?}"))
            })
            .collect();
        let keys: Vec<&str> = line
            .split(' ')
            .map(|kv| kv.split('=').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            ["key", "exp", "la", "cas", "fetch", "cls", "size"],
            "{who}"
        );
        let exp: i64 = f["exp"].parse().unwrap();
        let exp = if exp == -1 {
            "never".to_string()
        } else {
            // Seconds left, rounded to tens so a second's skew between the
            // two servers' clocks cannot matter.
            format!("{}", (exp - now + 5) / 10 * 10)
        };
        let la: i64 = f["la"].parse().unwrap();
        assert!((la - now).abs() <= 5, "{who}: la {la} far from now {now}");
        f["cas"].parse::<u64>().unwrap();
        out.insert(
            f["key"].to_string(),
            format!(
                "exp={exp} fetch={} cls={} size={}",
                f["fetch"], f["cls"], f["size"]
            ),
        );
    }
    out
}

/// Ask for a crawl until it is accepted (a crawl of the server's own may
/// be running: BUSY).
fn crawl_all(c: &mut Client, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = until(c, b"lru_crawler crawl all\r\n", b"\r\n");
        if r == b"OK\r\n" {
            return;
        }
        assert!(r.starts_with(b"BUSY "), "{who}: {}", show(&r));
        assert!(Instant::now() < deadline, "{who}: crawler busy for 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `steps` one round trip each on fresh servers started with `extra`;
/// both must give the same complete lines (the version string aside).
fn same_replies(extra: &[&str], steps: &[&[u8]]) {
    let servers = both(extra);
    let mut clients: Vec<Client> = servers.iter().map(|s| s.connect()).collect();
    for step in steps {
        let r: Vec<String> = clients
            .iter_mut()
            .map(|c| show(&until(c, step, b"\r\n")).replace("1.6.18-gannet-0.1.0", "1.6.18"))
            .collect();
        assert_eq!(r[0], r[1], "{extra:?} {}", show(step));
        assert!(!r[0].is_empty(), "no reply to {}", show(step));
    }
}

fn stat(c: &mut Client, name: &str) -> u64 {
    let r = until(c, b"stats\r\n", b"END\r\n");
    common::stat_num(&String::from_utf8_lossy(&r), name)
}

/// Wait up to 10 s for `curr_items` to reach `want`: what the crawler or
/// the LRU maintainer reclaims, they reclaim in the background.
fn wait_for_items(c: &mut Client, want: u64, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while stat(c, "curr_items") != want {
        assert!(
            Instant::now() < deadline,
            "{who}: curr_items {} never reached {want}",
            stat(c, "curr_items")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn command_replies_match_memcached() {
    let steps: &[&[u8]] = &[
        b"lru_crawler metadump\r\n",
        b"lru_crawler metadump 0\r\n",
        b"lru_crawler metadump 64\r\n",
        b"lru_crawler metadump 1,x\r\n",
        b"lru_crawler metadump all extra\r\n",
        b"lru_crawler crawl\r\n",
        b"lru_crawler crawl 64\r\n",
        b"lru_crawler crawl x\r\n",
        b"lru_crawler crawl hash\r\n",
        // Other commands before a metadump in the same write, even quiet
        // ones, make memcached refuse it.
        b"version\r\nlru_crawler metadump all\r\n",
        b"set q 0 0 1 noreply\r\nx\r\nlru_crawler metadump all\r\n",
        b"lru_crawler disable\r\n",
        b"lru_crawler disable\r\n",
        b"lru_crawler crawl all\r\n",
        b"lru_crawler metadump all\r\n",
        b"lru_crawler enable\r\n",
        b"lru_crawler enable\r\n",
    ];
    same_replies(&[], steps);
}

#[test]
fn metadump_lists_the_same_items_as_memcached() {
    let servers = both(&[]);
    let mut dumps = Vec::new();
    for s in &servers {
        let mut c = s.connect();
        let who = s.kind().name();
        let mut input = Vec::new();
        for i in 0..40 {
            let ttl = if i % 4 == 0 { 1000 } else { 0 };
            input.extend_from_slice(format!("set key:{i} {i} {ttl} 3\r\nabc\r\n").as_bytes());
        }
        // Keys that need encoding, flags, a fetched item, an expired one.
        input.extend_from_slice(b"set \"c%d\" 0 0 1\r\n1\r\n");
        input.extend_from_slice(b"set k\xc3\xa9 7 0 2\r\nab\r\n");
        input.extend_from_slice(b"set gone 0 1 1\r\n1\r\n");
        input.extend_from_slice(b"get key:3 key:4\r\n");
        let r = until(&mut c, &input, b"END\r\n");
        assert!(r.ends_with(b"END\r\n"), "{who}: {}", show(&r));
        dumps.push((who, c));
    }
    std::thread::sleep(Duration::from_millis(2100));
    let mut seen = Vec::new();
    for (who, c) in &mut dumps {
        let r = until(c, b"lru_crawler metadump all\r\n", b"END\r\n");
        let lines = dump_lines(&r, who);
        assert_eq!(lines.len(), 42, "{who}: {}", show(&r));
        assert!(lines.contains_key("%22c%25d%22"), "{who}: {lines:?}");
        assert!(lines.contains_key("k%C3%A9"), "{who}: {lines:?}");
        assert!(lines["key%3A3"].contains("fetch=yes"), "{who}: {lines:?}");
        assert!(lines["key%3A5"].contains("fetch=no"), "{who}: {lines:?}");
        assert!(!lines.contains_key("gone"), "{who}: expired item listed");
        // `hash` and a class list give the same items here (all in class 1).
        let h = until(c, b"lru_crawler metadump hash\r\n", b"END\r\n");
        assert_eq!(dump_lines(&h, who), lines, "{who}: hash");
        let one = until(c, b"lru_crawler metadump 1,2\r\n", b"END\r\n");
        assert_eq!(dump_lines(&one, who), lines, "{who}: 1,2");
        // The connection goes on normally after a dump.
        assert_eq!(until(c, b"mn\r\n", b"MN\r\n"), b"MN\r\n", "{who}");
        seen.push(lines);
    }
    assert_eq!(seen[0], seen[1]);
}

#[test]
fn crawl_reclaims_expired_items_like_memcached() {
    let servers = both(&[]);
    let mut cs: Vec<(&str, Client)> = servers
        .iter()
        .map(|s| (s.kind().name(), s.connect()))
        .collect();
    for (who, c) in &mut cs {
        let mut input = Vec::new();
        for i in 0..100 {
            let ttl = if i % 2 == 0 { 1 } else { 0 };
            input.extend_from_slice(format!("set k{i} 0 {ttl} 1 noreply\r\nx\r\n").as_bytes());
        }
        input.extend_from_slice(b"mn\r\n");
        assert_eq!(until(c, &input, b"MN\r\n"), b"MN\r\n", "{who}");
    }
    std::thread::sleep(Duration::from_millis(2100));
    for (who, c) in &mut cs {
        let starts = stat(c, "lru_crawler_starts");
        crawl_all(c, who);
        wait_for_items(c, 50, who);
        assert!(stat(c, "lru_crawler_starts") > starts, "{who}");
        // The LRU maintainer may reclaim k0 first (`reclaimed`): it is
        // the one dead item at the tail, before live k1. The other 49
        // are behind live items, left to the crawler.
        let by_crawler = stat(c, "crawler_reclaimed");
        let at_tail = stat(c, "reclaimed");
        assert_eq!(by_crawler + at_tail, 50, "{who}");
        assert!(at_tail <= 1, "{who}: {at_tail} reclaimed at the tail");
        assert_eq!(stat(c, "expired_unfetched"), 50, "{who}");
        assert!(stat(c, "crawler_items_checked") >= 50, "{who}");
        let r = until(c, b"get k0 k1\r\n", b"END\r\n");
        assert_eq!(show(&r), "VALUE k1 0 1\\r\\nx\\r\\nEND\\r\\n", "{who}");
    }
}

#[test]
fn metadump_refused_with_dump_disabled() {
    let servers = both(&["-X"]);
    for s in &servers {
        let mut c = s.connect();
        let r = until(&mut c, b"lru_crawler metadump all\r\n", b"\r\n");
        assert_eq!(
            show(&r),
            "ERROR metadump not allowed\\r\\n",
            "{}",
            s.kind().name()
        );
    }
}

/// A dump of many items goes out in pieces as the client reads, and the
/// connection carries on afterwards (gannet only: a size memcached's test
/// above does not need).
#[test]
fn large_metadump_streams_every_item_once() {
    let s = Server::start(Kind::Gannet, &["-m", "256"]);
    let mut c = s.connect();
    let n = 100_000;
    let mut input = Vec::new();
    for i in 0..n {
        input.extend_from_slice(format!("set key:{i} 0 0 4 noreply\r\nabcd\r\n").as_bytes());
    }
    input.extend_from_slice(b"mn\r\n");
    assert_eq!(until(&mut c, &input, b"MN\r\n"), b"MN\r\n");
    // The dump and a command after it, in one write.
    let r = until(
        &mut c,
        b"lru_crawler metadump all\r\nmn\r\n",
        b"END\r\nMN\r\n",
    );
    let text = String::from_utf8(r).unwrap();
    assert!(
        text.ends_with("END\r\nMN\r\n"),
        "{}",
        &text[text.len().saturating_sub(200)..]
    );
    let mut keys: Vec<&str> = text
        .split_terminator('\n')
        .filter_map(|l| l.strip_prefix("key="))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(keys.len(), n);
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), n, "a key was listed twice");
}

#[test]
fn cachedump_argument_checks_match_memcached() {
    let steps: &[&[u8]] = &[
        b"stats cachedump\r\n",
        b"stats cachedump 1\r\n",
        b"stats cachedump 1 x\r\n",
        b"stats cachedump x 1\r\n",
        b"stats cachedump -1 1\r\n",
        b"stats cachedump 1 -1\r\n",
        b"stats cachedump 0 1\r\n",
        b"stats cachedump 63 1\r\n",
        b"stats cachedump 64 1\r\n",
    ];
    same_replies(&[], steps);
    same_replies(&["-X"], steps);
}

/// What is listed differs by design (memcached: its HOT segment; gannet:
/// the whole class, see COMPATIBILITY.md), so the listing is checked on
/// gannet alone: format, limit, and memcached's 2 MB cap.
#[test]
fn cachedump_lists_a_class_in_memcached_format() {
    let s = Server::start(Kind::Gannet, &["-m", "256"]);
    let mut c = s.connect();
    let r = until(
        &mut c,
        b"set a 0 0 1\r\n1\r\nset bb 0 100 2\r\n12\r\n",
        b"STORED\r\nSTORED\r\n",
    );
    assert_eq!(r, b"STORED\r\nSTORED\r\n");
    let text = String::from_utf8(until(&mut c, b"stats cachedump 1 0\r\n", b"END\r\n")).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.pop(), Some("END"));
    lines.sort_unstable();
    assert_eq!(lines[0], "ITEM a [1 b; 0 s]");
    let exp: i64 = lines[1]
        .strip_prefix("ITEM bb [2 b; ")
        .and_then(|l| l.strip_suffix(" s]"))
        .unwrap_or_else(|| panic!("{text:?}"))
        .parse()
        .unwrap();
    assert!((exp - unix_now() - 100).abs() <= 2, "{exp}");
    let one = until(&mut c, b"stats cachedump 1 1\r\n", b"END\r\n");
    assert_eq!(String::from_utf8(one).unwrap().lines().count(), 2);
    // 30,000 items of ~120-byte lines: more than 2 MB, cut below it.
    let mut input = Vec::new();
    for i in 0..30_000 {
        input.extend_from_slice(format!("set {i:0>100} 0 0 1 noreply\r\nx\r\n").as_bytes());
    }
    input.extend_from_slice(b"mn\r\n");
    assert_eq!(until(&mut c, &input, b"MN\r\n"), b"MN\r\n");
    let me = format!("me {:0>100}\r\n", 1);
    let class = until(&mut c, me.as_bytes(), b"\r\n");
    let class = String::from_utf8(class).unwrap();
    let cls = class
        .split(' ')
        .find_map(|f| f.strip_prefix("cls="))
        .unwrap_or_else(|| panic!("{class:?}"));
    let big = until(
        &mut c,
        format!("stats cachedump {cls} 0\r\n").as_bytes(),
        b"END\r\n",
    );
    assert!(big.ends_with(b"END\r\n"));
    assert!(big.len() <= 2 * 1024 * 1024, "{}", big.len());
    assert!(big.len() > 2 * 1024 * 1024 - 200, "{}", big.len());
}

/// The `type=lru_crawler` lines a `watch sysevents` connection receives
/// within `limit`, without their `ts=` and `gid=` fields, once `want`
/// have arrived.
fn crawler_lines(w: &mut Client, want: usize, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        let lines: Vec<String> = text
            .split('\n')
            .filter(|l| l.contains(" type=lru_crawler "))
            .map(|l| l.split_once(" type=").unwrap().1.to_string())
            .collect();
        if lines.len() >= want || Instant::now() >= deadline {
            return lines;
        }
        let r = w.read_reply(1, Duration::from_millis(200));
        got.extend_from_slice(&r.bytes);
        assert!(!r.closed, "watcher closed");
    }
}

/// A line's `name=value` fields.
fn fields(line: &str) -> BTreeMap<&str, &str> {
    line.split(' ')
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

#[test]
fn automatic_crawl_logs_each_lru_like_memcached() {
    // The crawler starts disabled so the items are in place for the
    // first automatic run, which `lru_crawler enable` triggers.
    let servers = both(&["-o", "no_lru_crawler"]);
    let mut runs = Vec::new();
    for s in &servers {
        let who = s.kind().name();
        let mut c = s.connect();
        let mut input = Vec::new();
        for i in 0..100 {
            input.extend_from_slice(format!("set noexp{i} 0 0 5 noreply\r\nhello\r\n").as_bytes());
        }
        for (n, ttl) in [(50, 150), (30, 1), (20, 7200)] {
            for i in 0..n {
                let k = format!("ttl{ttl}_{i}");
                input.extend_from_slice(
                    format!("set {k} 0 {ttl} 5 noreply\r\nhello\r\n").as_bytes(),
                );
            }
        }
        let big = "x".repeat(3000);
        for i in 0..10 {
            input.extend_from_slice(
                format!("set big{i} 0 300 3000 noreply\r\n{big}\r\n").as_bytes(),
            );
        }
        input.extend_from_slice(b"mn\r\n");
        assert_eq!(until(&mut c, &input, b"MN\r\n"), b"MN\r\n", "{who}");
        runs.push((who, c));
    }
    // Let the 1 s TTLs run out.
    std::thread::sleep(Duration::from_millis(2200));
    let mut logs = Vec::new();
    for (who, c) in &mut runs {
        let mut w = servers
            .iter()
            .find(|s| s.kind().name() == *who)
            .unwrap()
            .connect();
        assert_eq!(
            until(&mut w, b"watch sysevents\r\n", b"\r\n"),
            b"OK\r\n",
            "{who}"
        );
        assert_eq!(
            until(c, b"lru_crawler enable\r\n", b"\r\n"),
            b"OK\r\n",
            "{who}"
        );
        let lines = crawler_lines(&mut w, 255, Duration::from_secs(10));
        assert_eq!(stat(c, "lru_crawler_starts"), 1, "{who}");
        assert_eq!(stat(c, "crawler_reclaimed"), 30, "{who}");
        logs.push((*who, lines));
    }
    // One line per LRU of every class id but 0 HOT, in memcached's order,
    // each the same on both servers. Idle, both have moved every item
    // from HOT to COLD by now, and these sizes have the same class ids
    // (1 and 17) in both class tables. `since_run` depends on where in
    // its second the run ended, so it is only checked for being small.
    let (mc, gn) = (&logs[0].1, &logs[1].1);
    assert_eq!(mc.len(), 255, "memcached: {mc:?}");
    assert_eq!(gn.len(), 255, "gannet: {gn:?}");
    let norm = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .map(|l| {
                let since: u32 = fields(l)["since_run"].parse().unwrap();
                assert!((1..=2).contains(&since), "{l}");
                l.split(' ')
                    .filter(|kv| !kv.starts_with("since_run="))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    };
    let (nm, ng) = (norm(mc), norm(gn));
    for (m, g) in nm.iter().zip(&ng) {
        assert_eq!(g, m);
    }
    let busy: Vec<&String> = ng
        .iter()
        .filter(|l| !l.ends_with("examined=0 reclaimed=0"))
        .collect();
    assert_eq!(
        busy,
        [
            "lru_crawler crawler=1 lru=cold low_mark=1 next_reclaims=50 next_run=65 elapsed=0 \
             examined=170 reclaimed=30",
            "lru_crawler crawler=17 lru=cold low_mark=1 next_reclaims=10 next_run=65 elapsed=0 \
             examined=10 reclaimed=0"
        ]
    );
}

#[test]
fn no_automatic_crawl_without_the_lru_maintainer() {
    let servers = both(&["-o", "no_lru_maintainer"]);
    for s in &servers {
        let who = s.kind().name();
        let mut c = s.connect();
        let mut w = s.connect();
        assert_eq!(
            until(&mut w, b"watch sysevents\r\n", b"\r\n"),
            b"OK\r\n",
            "{who}"
        );
        let lines = crawler_lines(&mut w, 1, Duration::from_millis(2500));
        assert!(lines.is_empty(), "{who}: {lines:?}");
        assert_eq!(stat(&mut c, "lru_crawler_starts"), 0, "{who}");
        // A requested crawl still runs, and logs nothing.
        crawl_all(&mut c, who);
        let lines = crawler_lines(&mut w, 1, Duration::from_millis(1500));
        assert!(lines.is_empty(), "{who}: {lines:?}");
        assert_eq!(stat(&mut c, "lru_crawler_starts"), 1, "{who}");
    }
}

/// `stats items` counter `name` of class 1 (0 when the class is empty).
fn items_stat(c: &mut Client, name: &str) -> u64 {
    let r = until(c, b"stats items\r\n", b"END\r\n");
    let text = String::from_utf8(r).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("STAT items:1:{name} ")))
        .map_or(0, |v| v.parse().unwrap())
}

#[test]
fn lru_maintenance_goes_on_during_a_long_crawl() {
    const ITEMS: usize = 10_000;
    for s in &both(&[]) {
        let who = s.kind().name();
        let mut c = s.connect();
        // A second's sleep per 1000 items checked: the crawl below lasts
        // about ten seconds.
        assert_eq!(
            until(&mut c, b"lru_crawler sleep 1000000\r\n", b"\r\n"),
            b"OK\r\n",
            "{who}"
        );
        let mut sets = Vec::new();
        for i in 0..ITEMS {
            sets.extend_from_slice(format!("set k{i} 0 0 1 noreply\r\nv\r\n").as_bytes());
        }
        sets.extend_from_slice(b"mn\r\n");
        assert_eq!(until(&mut c, &sets, b"MN\r\n"), b"MN\r\n", "{who}");
        assert!(
            items_stat(&mut c, "number_hot") > 0,
            "{who}: sets land in HOT"
        );
        crawl_all(&mut c, who);
        // Nothing is set from here on, so only the maintainer can empty
        // HOT, and it must do so while the crawler is still at work.
        let deadline = Instant::now() + Duration::from_secs(6);
        while items_stat(&mut c, "number_hot") > 0 {
            assert!(Instant::now() < deadline, "{who}: HOT never emptied");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(stat(&mut c, "lru_crawler_running"), 1, "{who}");
        assert_eq!(items_stat(&mut c, "number_cold"), ITEMS as u64, "{who}");
    }
}

/// What the crawler is left with: the LRU maintainer reclaims on its own
/// the expired items at the tail of a class, stopping at the first live
/// one, and after `flush_all` every item. Idle, nothing touches them.
#[test]
fn idle_maintainer_reclaims_dead_items_at_the_tail_like_memcached() {
    for s in &both(&[]) {
        let who = s.kind().name();
        let mut c = s.connect();
        let mut sets = Vec::new();
        for i in 0..100 {
            sets.extend_from_slice(format!("set dead{i} 0 1 1 noreply\r\nv\r\n").as_bytes());
        }
        for i in 0..50 {
            sets.extend_from_slice(format!("set live{i} 0 0 1 noreply\r\nv\r\n").as_bytes());
        }
        sets.extend_from_slice(b"mn\r\n");
        assert_eq!(until(&mut c, &sets, b"MN\r\n"), b"MN\r\n", "{who}");
        wait_for_items(&mut c, 50, who);
        assert_eq!(stat(&mut c, "reclaimed"), 100, "{who}");
        assert_eq!(stat(&mut c, "expired_unfetched"), 100, "{who}");
        assert_eq!(stat(&mut c, "crawler_reclaimed"), 0, "{who}");
        assert_eq!(stat(&mut c, "get_expired"), 0, "{who}");
        assert_eq!(until(&mut c, b"flush_all\r\n", b"\r\n"), b"OK\r\n");
        wait_for_items(&mut c, 0, who);
        assert_eq!(stat(&mut c, "reclaimed"), 150, "{who}");
        assert_eq!(stat(&mut c, "crawler_reclaimed"), 0, "{who}");
    }
}
