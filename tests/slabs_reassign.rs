//! `slabs reassign` moving real pages, on memcached and on gannet.
//!
//! The class ids and chunk sizes differ between the two servers (gannet's
//! item header is smaller), so the same commands are not compared byte
//! for byte; both servers must do the same things instead: a page of a
//! class with free chunks elsewhere moves without losing an item, lands
//! in the global page pool (class 0) and comes back out of it, and the
//! counters (`slabs_moved`, `slab_global_page_pool`,
//! `slab_reassign_rescues`, `slab_reassign_evictions_nomem`,
//! `slab_reassign_running`, `slab_reassign_chunk_rescues` for values
//! stored in chunks) say so. The reply texts of the refusals are
//! compared byte for byte in `text_protocol.rs`.
//!
//! The automover (`slab_automove=1`) does the same on its own: once a
//! class has more than 2.5 pages of free chunks and `slab_automove_window`
//! checks (one a second) without a new page or an eviction, its pages go
//! to the pool one by one until 2.5 pages or less are free.

mod common;

use common::{Client, Kind, Server, IDLE};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const KEYS: u32 = 3000;
const VALUE: usize = 1000;

fn value(i: u32) -> Vec<u8> {
    format!("{i:0>width$}", width = VALUE).into_bytes()
}

/// `stats <group>` (or plain `stats`) as a name -> value map.
fn stats(c: &mut Client, group: &str) -> HashMap<String, String> {
    let cmd = if group.is_empty() {
        "stats\r\n".to_string()
    } else {
        format!("stats {group}\r\n")
    };
    c.send(cmd.as_bytes());
    let mut text = Vec::new();
    while !text.ends_with(b"END\r\n") {
        let r = c.read_reply(usize::MAX, IDLE);
        assert!(!r.bytes.is_empty() && !r.closed, "no stats reply");
        text.extend_from_slice(&r.bytes);
    }
    common::stat_pairs(&String::from_utf8_lossy(&text))
        .into_iter()
        .collect()
}

fn num(m: &HashMap<String, String>, k: &str) -> u64 {
    m.get(k)
        .unwrap_or_else(|| panic!("no {k} in {m:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{k} is not a number"))
}

fn ask(c: &mut Client, cmd: &str) -> String {
    let r = c.exchange(format!("{cmd}\r\n").as_bytes(), 1);
    String::from_utf8_lossy(&r.bytes).trim_end().to_string()
}

/// Wait until the move asked for is done (`slabs_moved` reaches `moved`
/// and nothing is running).
fn wait_moved(c: &mut Client, name: &str, moved: u64) -> HashMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(c, "");
        if num(&s, "slabs_moved") >= moved && num(&s, "slab_reassign_running") == 0 {
            return s;
        }
        assert!(Instant::now() < deadline, "{name}: move not done: {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The values of `keys` that are present (one multi-get).
fn present(c: &mut Client, keys: &[u32]) -> HashMap<u32, Vec<u8>> {
    let mut cmd = b"get".to_vec();
    for k in keys {
        cmd.extend_from_slice(format!(" k{k}").as_bytes());
    }
    cmd.extend_from_slice(b"\r\n");
    c.send(&cmd);
    let mut buf = Vec::new();
    while !buf.ends_with(b"END\r\n") {
        let r = c.read_reply(usize::MAX, IDLE);
        assert!(!r.bytes.is_empty() && !r.closed, "get reply cut short");
        buf.extend_from_slice(&r.bytes);
    }
    let mut out = HashMap::new();
    let mut rest = &buf[..];
    while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
        let line = std::str::from_utf8(&rest[..line_end]).expect("header");
        if line == "END" {
            break;
        }
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[0], "VALUE", "{line}");
        let key: u32 = parts[1][1..].parse().expect("key");
        let len: usize = parts[3].parse().expect("length");
        let start = line_end + 2;
        out.insert(key, rest[start..start + len].to_vec());
        rest = &rest[start + len + 2..];
    }
    out
}

/// The class with the most pages in `stats slabs` (the highest id on a
/// tie), and its page count.
fn fullest_class(slabs: &HashMap<String, String>) -> (u32, u64) {
    slabs
        .iter()
        .filter_map(|(k, v)| {
            let (id, field) = k.split_once(':')?;
            if field != "total_pages" {
                return None;
            }
            Some((id.parse::<u32>().ok()?, v.parse::<u64>().ok()?))
        })
        .max_by_key(|&(id, p)| (p, id))
        .expect("a class with pages")
}

fn check(kind: Kind) {
    let name = kind.name();
    let server = Server::start(kind, &["-m", "64"]);
    let mut c = server.connect();
    let mut batch = Vec::new();
    for i in 0..KEYS {
        batch.extend_from_slice(format!("set k{i} 0 0 {VALUE} noreply\r\n").as_bytes());
        batch.extend_from_slice(&value(i));
        batch.extend_from_slice(b"\r\n");
    }
    c.send(&batch);
    assert_eq!(ask(&mut c, "mn"), "MN", "{name}: sets not done");

    let slabs = stats(&mut c, "slabs");
    let (class, pages) = fullest_class(&slabs);
    assert!(pages >= 3, "{name}: class {class} has {pages} pages");
    let perpage = num(&slabs, &format!("{class}:chunks_per_page")) as u32;

    // Free more than a page worth of chunks across the class.
    let mut deleted = Vec::new();
    let mut batch = Vec::new();
    for i in (0..KEYS).step_by(2).take(perpage as usize + 10) {
        batch.extend_from_slice(format!("delete k{i} noreply\r\n").as_bytes());
        deleted.push(i);
    }
    c.send(&batch);
    assert_eq!(ask(&mut c, "mn"), "MN");
    let items = num(&stats(&mut c, ""), "curr_items");

    assert_eq!(
        ask(&mut c, &format!("slabs reassign {class} 0")),
        "OK",
        "{name}"
    );
    let s = wait_moved(&mut c, name, 1);
    assert_eq!(num(&s, "slab_global_page_pool"), 1, "{name}: {s:?}");
    assert_eq!(num(&s, "slab_reassign_evictions_nomem"), 0, "{name}: {s:?}");
    assert!(num(&s, "slab_reassign_rescues") > 0, "{name}: {s:?}");
    assert_eq!(num(&s, "curr_items"), items, "{name}: an item was lost");
    let slabs = stats(&mut c, "slabs");
    assert_eq!(
        num(&slabs, &format!("{class}:total_pages")),
        pages - 1,
        "{name}"
    );

    let all: Vec<u32> = (0..KEYS).collect();
    let got = present(&mut c, &all);
    for i in 0..KEYS {
        match got.get(&i) {
            Some(v) => assert_eq!(v, &value(i), "{name}: k{i} changed"),
            None => assert!(deleted.contains(&i), "{name}: k{i} was lost"),
        }
    }
    assert_eq!(got.len() as u64, items, "{name}");

    // One page in the pool is not enough to give one away; two are.
    assert_eq!(
        ask(&mut c, &format!("slabs reassign 0 {class}")),
        "NOSPARE source class has no spare pages",
        "{name}"
    );
    assert_eq!(ask(&mut c, "slabs reassign -1 0"), "OK", "{name}");
    let s = wait_moved(&mut c, name, 2);
    assert_eq!(num(&s, "slab_global_page_pool"), 2, "{name}: {s:?}");
    assert_eq!(
        ask(&mut c, &format!("slabs reassign 0 {class}")),
        "OK",
        "{name}"
    );
    let s = wait_moved(&mut c, name, 3);
    assert_eq!(num(&s, "slab_global_page_pool"), 1, "{name}: {s:?}");
    let slabs = stats(&mut c, "slabs");
    assert_eq!(
        num(&slabs, &format!("{class}:total_pages")),
        pages - 1,
        "{name}"
    );
    let s = stats(&mut c, "");
    let evicted = num(&s, "slab_reassign_evictions_nomem");
    assert_eq!(num(&s, "curr_items") + evicted, items, "{name}: {s:?}");
    let got = present(&mut c, &all);
    for (k, v) in &got {
        assert_eq!(v, &value(*k), "{name}: k{k} changed");
    }
    assert_eq!(got.len() as u64 + evicted, items, "{name}");
}

const BIG: usize = 1_200_000;

fn big_value(i: u32) -> Vec<u8> {
    (0..BIG as u32).map(|j| (i * 7 + j % 251) as u8).collect()
}

/// Values over `slab_chunk_max` are stored in chunks of the largest class
/// (memcached links them from a header item, gannet from a head chunk).
/// Draining a page of that class moves each chunk in it to a free chunk
/// elsewhere (`slab_reassign_chunk_rescues`): no value is lost or torn.
/// Pages are moved to the pool one at a time until a move rescued chunks
/// (gannet gives away pages with no chunk in use first).
fn check_chained(kind: Kind) {
    let name = kind.name();
    let server = Server::start(kind, &["-m", "64", "-I", "2m"]);
    let mut c = server.connect();
    let n = 12u32;
    for i in 0..n {
        let mut cmd = format!("set big{i} 0 0 {BIG}\r\n").into_bytes();
        cmd.extend_from_slice(&big_value(i));
        cmd.extend_from_slice(b"\r\n");
        let r = c.exchange(&cmd, 8);
        assert_eq!(r.bytes, b"STORED\r\n", "{name}: big{i}");
    }
    // Every other one goes: free chunks in the class, no item lost.
    for i in (1..n).step_by(2) {
        assert_eq!(ask(&mut c, &format!("delete big{i}")), "DELETED");
    }
    let slabs = stats(&mut c, "slabs");
    let class = fullest_class(&slabs).0;
    let mut moved = 0;
    let s = loop {
        assert!(moved < 8, "{name}: no chunk rescued in {moved} moves");
        assert_eq!(
            ask(&mut c, &format!("slabs reassign {class} 0")),
            "OK",
            "{name}"
        );
        moved += 1;
        let s = wait_moved(&mut c, name, moved);
        if num(&s, "slab_reassign_chunk_rescues") > 0 {
            break s;
        }
    };
    assert_eq!(num(&s, "slab_reassign_evictions_nomem"), 0, "{name}: {s:?}");
    assert_eq!(num(&s, "slab_global_page_pool"), moved, "{name}: {s:?}");
    assert_eq!(num(&s, "curr_items"), u64::from(n / 2), "{name}: {s:?}");
    for i in (0..n).step_by(2) {
        let head = format!("VALUE big{i} 0 {BIG}\r\n").into_bytes();
        let r = c.exchange(format!("get big{i}\r\n").as_bytes(), head.len() + BIG + 7);
        assert!(r.bytes.starts_with(&head), "{name}: big{i} missing");
        let body = &r.bytes[head.len()..];
        assert!(
            body.len() == BIG + 7
                && body[..BIG] == big_value(i)[..]
                && body.ends_with(b"\r\nEND\r\n"),
            "{name}: big{i} changed"
        );
    }
}

#[test]
fn memcached_rescues_chunks_this_way() {
    check_chained(Kind::Memcached);
}

#[test]
fn gannet_rescues_chunks_like_memcached() {
    check_chained(Kind::Gannet);
}

#[test]
fn memcached_moves_pages_this_way() {
    check(Kind::Memcached);
}

#[test]
fn gannet_moves_pages_like_memcached() {
    check(Kind::Gannet);
}

const QUIET_KEYS: u32 = 20_000;

/// Fill one class with 20,000 1000-byte values, keep one in ten, and
/// return (class, pages, chunks per page) as they are then.
fn fill_and_thin(c: &mut Client) -> (u32, u64, u64) {
    let mut batch = Vec::new();
    for i in 0..QUIET_KEYS {
        batch.extend_from_slice(format!("set k{i} 0 0 {VALUE} noreply\r\n").as_bytes());
        batch.extend_from_slice(&value(i));
        batch.extend_from_slice(b"\r\n");
    }
    for i in (0..QUIET_KEYS).filter(|i| i % 10 != 0) {
        batch.extend_from_slice(format!("delete k{i} noreply\r\n").as_bytes());
    }
    c.send(&batch);
    assert_eq!(ask(c, "mn"), "MN");
    let slabs = stats(c, "slabs");
    let (class, pages) = fullest_class(&slabs);
    let perpage = num(&slabs, &format!("{class}:chunks_per_page"));
    (class, pages, perpage)
}

/// A quiet class gives its spare pages back within a few seconds of a
/// 3-check window, and keeps every item.
fn check_quiet_class(kind: Kind) {
    let name = kind.name();
    let server = Server::start(kind, &["-m", "64", "-o", "slab_automove_window=3"]);
    let mut c = server.connect();
    let (class, pages, perpage) = fill_and_thin(&mut c);
    let live = u64::from(QUIET_KEYS / 10);
    assert!(
        (pages * perpage - live) as f64 > 2.5 * perpage as f64 * 4.0,
        "{name}: {pages} pages of {perpage}"
    );
    // Pages go one at a time while more than 2.5 pages are free, so the
    // class keeps the most pages that leave at most that much free.
    let keep = (1..=pages)
        .rev()
        .find(|&p| (p * perpage).saturating_sub(live) as f64 <= 2.5 * perpage as f64)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let s = loop {
        // `stats slabs` first: the moves can finish between the two
        // requests, and the counters must be read after the pages.
        let slabs = stats(&mut c, "slabs");
        let s = stats(&mut c, "");
        if num(&slabs, &format!("{class}:total_pages")) == keep
            && num(&s, "slab_reassign_running") == 0
        {
            break s;
        }
        assert!(Instant::now() < deadline, "{name}: {s:?} {slabs:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(num(&s, "slabs_moved"), pages - keep, "{name}: {s:?}");
    assert_eq!(num(&s, "slab_global_page_pool"), pages - keep, "{name}");
    assert_eq!(num(&s, "slab_reassign_evictions_nomem"), 0, "{name}");
    assert_eq!(num(&s, "curr_items"), live, "{name}");
    let all: Vec<u32> = (0..QUIET_KEYS).collect();
    let got = present(&mut c, &all);
    assert_eq!(got.len() as u64, live, "{name}");
    for (k, v) in &got {
        assert!(k % 10 == 0, "{name}: deleted k{k} is back");
        assert_eq!(v, &value(*k), "{name}: k{k} changed");
    }
}

/// With a window of 1000 checks, the pages the fill added keep the class
/// dirty for about 1000 s: a few seconds later nothing has moved.
fn check_dirty_window(kind: Kind) {
    let name = kind.name();
    let server = Server::start(kind, &["-m", "64", "-o", "slab_automove_window=1000"]);
    let mut c = server.connect();
    let (class, pages, _) = fill_and_thin(&mut c);
    std::thread::sleep(Duration::from_secs(5));
    let s = stats(&mut c, "");
    assert_eq!(num(&s, "slabs_moved"), 0, "{name}: {s:?}");
    assert_eq!(num(&s, "slab_global_page_pool"), 0, "{name}");
    let slabs = stats(&mut c, "slabs");
    assert_eq!(
        num(&slabs, &format!("{class}:total_pages")),
        pages,
        "{name}"
    );
}

#[test]
fn memcached_automove_returns_a_quiet_class_s_pages() {
    check_quiet_class(Kind::Memcached);
}

#[test]
fn gannet_automove_returns_a_quiet_class_s_pages_like_memcached() {
    check_quiet_class(Kind::Gannet);
}

#[test]
fn memcached_automove_waits_for_a_clean_window() {
    check_dirty_window(Kind::Memcached);
}

#[test]
fn gannet_automove_waits_for_a_clean_window_like_memcached() {
    check_dirty_window(Kind::Gannet);
}
