//! incr/decr in place or as a new item, against memcached 1.6.18.
//!
//! memcached rewrites an incr/decr result in place (a shorter number padded
//! with spaces, the fetched bit kept) unless a reply not yet written holds
//! the item: an `mg` hit or a binary get hit earlier in the same batch,
//! until `mn`, a classic get, a binary NOOP or error, or the `-R` budget
//! makes memcached write (`src/exec/pins.rs`). Each case below sends the
//! same writes to both servers and compares every reply byte (binary CAS
//! fields are zeroed: each server numbers its own). Every item is hit at
//! most once before the incr/decr, so memcached's timing-dependent LRU
//! bump queue (second hit on a COLD item) plays no part.

mod common;

use common::{bin_packet, both, show, until, Server};
use std::time::Duration;

/// A text case: writes sent one after another on one connection. A write
/// ending in `|` is sent as is, without waiting for replies, 100 ms before
/// the next one; every other write is followed by `mn` and its replies are
/// read up to the `MN`.
type TextCase = (&'static str, &'static [&'static [u8]]);

const TEXT: &[TextCase] = &[
    (
        "alone: in place, padded",
        &[b"set a 0 0 3\r\n100\r\n", b"decr a 95\r\n", b"get a\r\n"],
    ),
    (
        "after mg in the same write: a new item",
        &[b"set b 0 0 3\r\n100\r\n", b"mg b\r\ndecr b 95\r\n", b"get b\r\n"],
    ),
    (
        "mg then mn: written, so in place",
        &[b"set c 0 0 3\r\n100\r\n", b"mg c\r\nmn\r\ndecr c 95\r\n", b"get c\r\n"],
    ),
    (
        "a classic get writes at once",
        &[b"set d 0 0 3\r\n100\r\n", b"mg d\r\nget nope\r\ndecr d 95\r\n", b"get d\r\n"],
    ),
    (
        "a get refused for a long key also drops what was held",
        &[
            b"set e 0 0 3\r\n100\r\n",
            b"mg e\r\nget aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\ndecr e 95\r\n",
            b"get e\r\n",
        ],
    ),
    (
        "other replies and errors do not write",
        &[
            b"set f 0 0 3\r\n100\r\n",
            b"mg f q\r\ntouch nope 0\r\nbogus\r\ndecr f 95\r\n",
            b"get f\r\n",
        ],
    ),
    (
        "the new item is unfetched; the next decr is in place",
        &[
            b"set g 0 0 3\r\n100\r\n",
            b"mg g\r\ndecr g 1\r\ndecr g 1\r\n",
            b"mg g h t v\r\n",
        ],
    ),
    (
        "same length: still a new item (h0)",
        &[b"set h 0 0 3\r\n100\r\n", b"mg h\r\nincr h 1\r\n", b"mg h h v\r\n"],
    ),
    (
        "a set in between makes a new item nobody holds",
        &[
            b"set i 0 0 3\r\n100\r\n",
            b"mg i\r\nset i 0 0 3\r\n100\r\ndecr i 95\r\n",
            b"get i\r\n",
        ],
    ),
    (
        "ma after mg, and the wrapped u64",
        &[
            b"set j 0 0 20\r\n18446744073709551615\r\n",
            b"mg j v\r\nma j t\r\n",
            b"get j\r\n",
        ],
    ),
    (
        "20 commands after the mg: the budget wrote after the 21st",
        &[
            b"set k 0 0 3\r\n100\r\n",
            b"mg k\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\ndecr k 95\r\n",
            b"get k\r\n",
        ],
    ),
    (
        "19 commands after the mg: the decr is the 21st, still held",
        &[
            b"set l 0 0 3\r\n100\r\n",
            b"mg l\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\ndecr l 95\r\n",
            b"get l\r\n",
        ],
    ),
    (
        "md I keeps the same item, still held: a new item, not stale",
        &[
            b"set n 0 0 3\r\n100\r\n",
            b"mg n\r\nmd n I\r\ndecr n 95\r\n",
            b"mg n v\r\n",
        ],
    ),
    (
        "md I without a hold: in place, and still stale",
        &[
            b"set o 0 0 3\r\n100\r\n",
            b"md o I\r\ndecr o 95\r\n",
            b"mg o v\r\n",
        ],
    ),
    (
        "a data block split across writes: written before what follows is read",
        &[
            b"set m 0 0 3\r\n100\r\n",
            b"mg m\r\nset x 0 0 5\r\nab|",
            b"cde\r\ndecr m 95\r\n",
            b"get m\r\n",
        ],
    ),
];

fn run_text(servers: &[Server; 2], cases: &[TextCase]) {
    let mut transcripts: Vec<Vec<String>> = Vec::new();
    for s in servers {
        let mut c = s.connect();
        let mut t = Vec::new();
        for (name, writes) in cases {
            let mut got = Vec::new();
            for w in writes.iter() {
                if let Some(part) = w.strip_suffix(b"|") {
                    c.send(part);
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                let mut input = w.to_vec();
                input.extend_from_slice(b"mn\r\n");
                got.extend_from_slice(&until(&mut c, &input, b"MN\r\n"));
            }
            t.push(format!("{name}: {}", show(&got)));
        }
        transcripts.push(t);
    }
    for (m, g) in transcripts[0].iter().zip(&transcripts[1]) {
        assert_eq!(g, m, "gannet (left) against memcached (right)");
    }
}

#[test]
fn text_and_meta_match_memcached() {
    run_text(&both(&[]), TEXT);
}

#[test]
fn the_r_budget_decides_where_memcached_writes() {
    // With -R 5, memcached writes after the 6th command of a batch.
    run_text(
        &both(&["-R", "5"]),
        &[
            (
                "decr is the 7th: written before it",
                &[
                    b"set a 0 0 3\r\n100\r\n",
                    b"mg a\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\ndecr a 95\r\n",
                    b"get a\r\n",
                ],
            ),
            (
                "decr is the 6th: still held",
                &[
                    b"set b 0 0 3\r\n100\r\n",
                    b"mg b\r\nmg z\r\nmg z\r\nmg z\r\nmg z\r\ndecr b 95\r\n",
                    b"get b\r\n",
                ],
            ),
        ],
    );
}

// ------------------------------------------------------------- binary

const GET: u8 = 0x00;
const SET: u8 = 0x01;
const DECR: u8 = 0x06;
const NOOP: u8 = 0x0a;
const GETK: u8 = 0x0c;
const GETQ: u8 = 0x09;
const TOUCH: u8 = 0x1c;
const END_OPAQUE: u32 = 0xfeed_beef;
/// In a case's packet list: send what came before, wait 100 ms, go on.
const SPLIT: &[u8] = b"split";

fn packet(op: u8, key: &[u8], extras: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    bin_packet(op, key, extras, value, 0, opaque)
}

fn set(key: &[u8], value: &[u8]) -> Vec<u8> {
    packet(SET, key, &[0; 8], value, 1)
}

fn decr(key: &[u8], delta: u64) -> Vec<u8> {
    let mut ext = delta.to_be_bytes().to_vec();
    ext.extend_from_slice(&0u64.to_be_bytes());
    ext.extend_from_slice(&u32::MAX.to_be_bytes());
    packet(DECR, key, &ext, b"", 2)
}

/// Replies with their CAS fields zeroed.
fn without_cas(mut bytes: Vec<u8>) -> Vec<u8> {
    let mut at = 0;
    while at + 24 <= bytes.len() {
        let body = u32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        bytes[at + 16..at + 24].fill(0);
        at += 24 + body;
    }
    bytes
}

#[test]
fn binary_matches_memcached() {
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "alone",
            vec![
                set(b"a", b"100"),
                decr(b"a", 95),
                packet(GET, b"a", &[], b"", 3),
            ],
        ),
        (
            "after GETK: a new item",
            vec![
                set(b"b", b"100"),
                packet(GETK, b"b", &[], b"", 3),
                decr(b"b", 95),
                packet(GET, b"b", &[], b"", 4),
            ],
        ),
        (
            "NOOP writes",
            vec![
                set(b"c", b"100"),
                packet(GET, b"c", &[], b"", 3),
                packet(NOOP, b"", &[], b"", 9),
                decr(b"c", 95),
                packet(GET, b"c", &[], b"", 4),
            ],
        ),
        (
            "an error reply writes",
            vec![
                set(b"d", b"100"),
                packet(GETK, b"d", &[], b"", 3),
                packet(GET, b"nope", &[], b"", 5),
                decr(b"d", 95),
                packet(GET, b"d", &[], b"", 4),
            ],
        ),
        (
            "a GETK miss echoes the key and does not write; GETQ is silent",
            vec![
                set(b"e", b"100"),
                packet(GETK, b"e", &[], b"", 3),
                packet(GETK, b"nope", &[], b"", 5),
                packet(GETQ, b"nope", &[], b"", 6),
                decr(b"e", 95),
                packet(GET, b"e", &[], b"", 4),
            ],
        ),
        (
            "TOUCH holds too",
            vec![
                set(b"f", b"100"),
                packet(TOUCH, b"f", &0u32.to_be_bytes(), b"", 3),
                decr(b"f", 95),
                packet(GET, b"f", &[], b"", 4),
            ],
        ),
        (
            "a value split across writes: written before what follows is read",
            vec![
                set(b"g", b"100"),
                packet(GETK, b"g", &[], b"", 3),
                set(b"x", b"abcde")[..30].to_vec(),
                SPLIT.to_vec(),
                set(b"x", b"abcde")[30..].to_vec(),
                decr(b"g", 95),
                packet(GET, b"g", &[], b"", 4),
            ],
        ),
    ];
    let servers = both(&["-B", "binary"]);
    let mut transcripts: Vec<Vec<String>> = Vec::new();
    let end = packet(NOOP, b"", &[], b"", END_OPAQUE);
    let mut end_reply = end.clone();
    end_reply[0] = 0x81;
    for s in &servers {
        let mut c = s.connect();
        let mut t = Vec::new();
        for (name, packets) in &cases {
            let mut parts = packets.split(|p| p == SPLIT);
            let last = parts.next_back().unwrap();
            for part in parts {
                c.send(&part.concat());
                std::thread::sleep(Duration::from_millis(100));
            }
            let mut input = last.concat();
            input.extend_from_slice(&end);
            let got = without_cas(until(&mut c, &input, &end_reply));
            assert!(got.ends_with(&end_reply), "{name}: {}", show(&got));
            t.push(format!("{name}: {}", show(&got)));
        }
        transcripts.push(t);
    }
    for (m, g) in transcripts[0].iter().zip(&transcripts[1]) {
        assert_eq!(g, m, "gannet (left) against memcached (right)");
    }
}
