//! Meta-protocol conformance: the same command sequences, run on the real
//! memcached 1.6.18 and on gannet, must get the same replies.
//!
//! Each test starts both servers, sends every step of a table on one
//! connection per server, and compares the replies step by step. A step
//! is followed by `mn`, and its reply is read up to the `MN` that answers
//! it, so a quiet command that sends nothing is checked without waiting
//! for a timeout (and `mn` itself is checked on every step).
//!
//! What cannot be byte-identical is compared by meaning, never skipped:
//! - CAS values (`c<n>`, `cas=<n>`) are renumbered in order of first
//!   appearance per server, so "same item, same CAS" and "CAS changed" are
//!   still checked while the absolute numbers may differ.
//! - Times (`t<n>`, `l<n>`, `exp=`, `la=`) may differ by one second (the
//!   servers run the table at different moments); `-1` must match exactly.
//! - Value blocks of `VA` replies are compared exactly.
//!
//! Counters are checked too: after each table, the `stats` counters that
//! meta commands move must be equal on both servers.

mod common;

use common::{show, Kind, Server};
use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

/// Longest a step may take before the test fails (never hangs).
const STEP_LIMIT: Duration = Duration::from_secs(10);

/// Read from `client` until the received bytes end with `suffix`.
fn read_until(client: &mut common::Client, suffix: &[u8], what: &str) -> Vec<u8> {
    let deadline = Instant::now() + STEP_LIMIT;
    let mut stream = client.stream();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set_read_timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !got.ends_with(suffix) {
        assert!(
            Instant::now() < deadline,
            "{what}: no complete reply within {STEP_LIMIT:?}; got {}",
            show(&got)
        );
        match stream.read(&mut buf) {
            Ok(0) => panic!("{what}: connection closed; got {}", show(&got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("{what}: read failed: {e}; got {}", show(&got)),
        }
    }
    got
}

/// Send `step` followed by `mn`, return the reply without the final `MN`.
fn exchange(client: &mut common::Client, step: &[u8], what: &str) -> Vec<u8> {
    client.send(step);
    client.send(b"mn\r\n");
    let mut got = read_until(client, b"MN\r\n", what);
    got.truncate(got.len() - 4);
    got
}

/// Run every step on a fresh server of `kind`; replies plus the counters.
fn run(kind: Kind, steps: &[Vec<u8>]) -> (Vec<Vec<u8>>, HashMap<String, String>) {
    let server = Server::start(kind, &[]);
    let mut client = server.connect();
    let replies = steps
        .iter()
        .map(|s| exchange(&mut client, s, &format!("{}: {}", kind.name(), show(s))))
        .collect();
    client.send(b"stats\r\n");
    let stats = read_until(&mut client, b"END\r\n", "stats");
    let counters = common::stat_pairs(&String::from_utf8_lossy(&stats))
        .into_iter()
        .collect();
    (replies, counters)
}

/// One unit of a reply: a status/error line (tokens) or a value block.
#[derive(Debug, PartialEq)]
enum Part {
    Line(Vec<String>),
    Block(Vec<u8>),
}

/// Split a reply into lines and the value blocks announced by `VA <len>`.
fn parts(reply: &[u8]) -> Vec<Part> {
    let mut out = Vec::new();
    let mut rest = reply;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(rest.len());
        let line = &rest[..end];
        rest = rest.get(end + 2..).unwrap_or(&[]);
        let text = String::from_utf8_lossy(line).into_owned();
        let tokens: Vec<String> = text.split(' ').map(str::to_string).collect();
        let block_len = match (tokens.first().map(String::as_str), tokens.get(1)) {
            (Some("VA"), Some(n)) => n.parse::<usize>().ok(),
            _ => None,
        };
        out.push(Part::Line(tokens));
        if let Some(n) = block_len {
            let take = (n + 2).min(rest.len());
            out.push(Part::Block(rest[..take].to_vec()));
            rest = &rest[take..];
        }
    }
    out
}

/// Renumbers CAS values in order of first appearance on one server.
#[derive(Default)]
struct CasMap(HashMap<String, usize>);

impl CasMap {
    fn id(&mut self, cas: &str) -> String {
        if cas == "0" {
            return "0".into();
        }
        let next = self.0.len() + 1;
        format!("#{}", self.0.entry(cas.to_string()).or_insert(next))
    }
}

/// A token in comparable form: CAS renumbered; times kept as numbers so
/// they can be compared with a tolerance.
#[derive(Debug)]
enum Tok {
    Exact(String),
    Time(String, i64),
}

fn is_status(first: &str) -> bool {
    matches!(first, "VA" | "HD" | "EN" | "NS" | "EX" | "NF" | "ME")
}

fn tokens(line: &[String], cas: &mut CasMap) -> Vec<Tok> {
    let status = line.first().is_some_and(|f| is_status(f));
    line.iter()
        .enumerate()
        .map(|(i, t)| {
            if !status || i == 0 {
                return Tok::Exact(t.clone());
            }
            for prefix in ["cas=", "c"] {
                if let Some(n) = t.strip_prefix(prefix) {
                    if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                        return Tok::Exact(format!("{prefix}{}", cas.id(n)));
                    }
                }
            }
            for prefix in ["exp=", "la=", "t", "l"] {
                if let Some(v) = t.strip_prefix(prefix).and_then(|n| n.parse::<i64>().ok()) {
                    if v != -1 {
                        return Tok::Time(prefix.to_string(), v);
                    }
                }
            }
            Tok::Exact(t.clone())
        })
        .collect()
}

fn same_token(a: &Tok, b: &Tok) -> bool {
    match (a, b) {
        (Tok::Exact(x), Tok::Exact(y)) => x == y,
        (Tok::Time(p, x), Tok::Time(q, y)) => p == q && (x - y).abs() <= 1,
        _ => false,
    }
}

/// Compare two replies by meaning; `Err` describes the first difference.
fn equivalent(
    want: &[u8],
    got: &[u8],
    want_cas: &mut CasMap,
    got_cas: &mut CasMap,
) -> Result<(), String> {
    let (w, g) = (parts(want), parts(got));
    if w.len() != g.len() {
        return Err(format!("{} parts vs {}", w.len(), g.len()));
    }
    for (a, b) in w.iter().zip(&g) {
        match (a, b) {
            (Part::Block(x), Part::Block(y)) if x == y => {}
            (Part::Line(x), Part::Line(y)) => {
                let (tx, ty) = (tokens(x, want_cas), tokens(y, got_cas));
                if tx.len() != ty.len() || !tx.iter().zip(&ty).all(|(p, q)| same_token(p, q)) {
                    return Err(format!("{tx:?} vs {ty:?}"));
                }
            }
            _ => return Err(format!("{a:?} vs {b:?}")),
        }
    }
    Ok(())
}

/// Run `steps` on memcached and gannet and require equivalent replies and
/// counters. Returns memcached's replies so a test can also pin them.
fn compare(name: &str, steps: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let (want, want_stats) = run(Kind::Memcached, steps);
    let (got, got_stats) = run(Kind::Gannet, steps);
    let (mut want_cas, mut got_cas) = (CasMap::default(), CasMap::default());
    let mut failures = Vec::new();
    for ((step, w), g) in steps.iter().zip(&want).zip(&got) {
        if let Err(why) = equivalent(w, g, &mut want_cas, &mut got_cas) {
            failures.push(format!(
                "{name}: {}\n  memcached: {}\n  gannet:    {}\n  ({why})",
                show(step),
                show(w),
                show(g)
            ));
        }
    }
    for c in common::COMMAND_COUNTERS {
        if want_stats.get(*c) != got_stats.get(*c) {
            failures.push(format!(
                "{name}: stat {c}: memcached {:?}, gannet {:?}",
                want_stats.get(*c),
                got_stats.get(*c)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    want
}

/// Steps from lines: `\r\n` written as text is the line end.
fn steps(lines: &[&str]) -> Vec<Vec<u8>> {
    lines
        .iter()
        .map(|l| l.replace("\\r\\n", "\r\n").into_bytes())
        .collect()
}

#[test]
fn comparison_normalises_only_cas_and_time() {
    let (mut a, mut b) = (CasMap::default(), CasMap::default());
    let ok = |w: &[u8], g: &[u8], a: &mut CasMap, b: &mut CasMap| equivalent(w, g, a, b);
    assert!(ok(b"HD c5 t30\r\n", b"HD c9 t29\r\n", &mut a, &mut b).is_ok());
    // c5 was renumbered #1 on one side and c9 on the other: c5 vs c10 is
    // a CAS change on one server only.
    assert!(ok(b"HD c5\r\n", b"HD c10\r\n", &mut a, &mut b).is_err());
    assert!(ok(b"HD t-1\r\n", b"HD t0\r\n", &mut a, &mut b).is_err());
    assert!(ok(b"HD t30\r\n", b"HD t28\r\n", &mut a, &mut b).is_err());
    assert!(ok(b"VA 2 s2\r\nab\r\n", b"VA 2 s2\r\nax\r\n", &mut a, &mut b).is_err());
    assert!(ok(b"HD kfoo\r\n", b"HD kfo\r\n", &mut a, &mut b).is_err());
    assert!(ok(b"", b"EN\r\n", &mut a, &mut b).is_err());
    // Data lines are never normalised.
    assert!(ok(b"VA 3\r\nc12\r\n", b"VA 3\r\nc13\r\n", &mut a, &mut b).is_err());
}

#[test]
fn flags_modes_and_reply_shapes_match_memcached() {
    let want = compare(
        "shapes",
        &steps(&[
            // mg: miss shapes, quiet miss, every return flag on a hit.
            "mg a v\\r\\n",
            "mg a s v t c f l h O1 k\\r\\n",
            "mg a q k O7 v\\r\\n",
            "mg a O2 k q\\r\\n",
            "ms a 2 F5 T0\\r\\nab\\r\\n",
            "mg a\\r\\n",
            "mg a v\\r\\n",
            "mg a O5 l h s t f c k v\\r\\n",
            "mg a k O5 c f t s h l\\r\\n",
            "mg a q\\r\\n",
            "mg a q v k O5\\r\\n",
            "mg a vxyz\\r\\n",
            "mg a P L v\\r\\n",
            // h and u: u neither marks fetched nor bumps.
            "ms h 1\\r\\nx\\r\\n",
            "mg h u h\\r\\n",
            "mg h h\\r\\n",
            "mg h h\\r\\n",
            // T on a hit is a touch (t before T shows the old ttl).
            "mg a T30 t v\\r\\n",
            "mg a t T600 t\\r\\n",
            "mg a T0 t\\r\\n",
            "mg a T-1 v\\r\\n",
            "mg a v\\r\\n",
            // ms: modes, flags, CAS, echo order, quiet.
            "ms s 2 MS T30 F5 c k O1\\r\\nab\\r\\n",
            "mg s v f t\\r\\n",
            "ms s 2 MS q\\r\\ncd\\r\\n",
            "ms s 2 q O1 k c\\r\\nef\\r\\n",
            "ms s 2 ME c k\\r\\nzz\\r\\n",
            "ms s2 2 ME c\\r\\nzz\\r\\n",
            "ms s3 2 MR\\r\\nzz\\r\\n",
            "ms s3 2 MA O4\\r\\nzz\\r\\n",
            "ms s3 2 MP k\\r\\nzz\\r\\n",
            "ms s 2 MR q\\r\\ngh\\r\\n",
            "ms s 2 MA c\\r\\nij\\r\\n",
            "ms s 2 MP f c\\r\\nkl\\r\\n",
            "mg s v f c t\\r\\n",
            "ms s 2 MS\\r\\nab\\r\\n",
            "ms s 2 s f v h l t\\r\\nab\\r\\n",
            "ms s 2 C999 c O1\\r\\nab\\r\\n",
            "ms nf 2 C999 c O1 k\\r\\nab\\r\\n",
            "ms s 2 C999 q\\r\\nab\\r\\n",
            "ms s 2 ME C999\\r\\nxy\\r\\n",
            "ms nb 2 ME C999 c\\r\\nxy\\r\\n",
            "ms s 2 MA C999\\r\\nxy\\r\\n",
            "ms nb2 2 MA C999\\r\\nxy\\r\\n",
            "ms s 2 C0 c\\r\\nab\\r\\n",
            "ms nb3 2 C0 c\\r\\nab\\r\\n",
            "ms s 2 C0 MA c\\r\\nab\\r\\n",
            "ms s 2 I C0\\r\\nab\\r\\n",
            "mg s c v\\r\\n",
            "ms n9 1 MA N30\\r\\nx\\r\\n",
            "ms fl 1 F4294967295\\r\\nx\\r\\n",
            "mg fl f\\r\\n",
            "ms ex 1 T-1\\r\\nx\\r\\n",
            "mg ex v\\r\\n",
            "ms ls 0\\r\\n\\r\\n",
            "mg ls s v\\r\\n",
            // md: CAS, quiet, echo.
            "md nope\\r\\n",
            "md nope q k O3\\r\\n",
            "ms d 1\\r\\nx\\r\\n",
            "md d C1 I\\r\\n",
            "md d C1 q\\r\\n",
            "md d C0\\r\\n",
            "md d q O1 k\\r\\n",
            "md d O1 k\\r\\n",
            "ms d 1 T100\\r\\nx\\r\\n",
            "md d T5 k\\r\\n",
            "mg d\\r\\n",
            "md nope C0\\r\\n",
            "md nope v\\r\\n",
            // ma: default incr, decr floor, wrap, create, CAS, quiet.
            "ma n\\r\\n",
            "ma n q\\r\\n",
            "ma n O1 k\\r\\n",
            "ma n q O1 k\\r\\n",
            "ma n N0 J10 v t c\\r\\n",
            "ma n v\\r\\n",
            "ma n\\r\\n",
            "ma n T30 t v\\r\\n",
            "ma n t T60\\r\\n",
            "ma n t T0 t\\r\\n",
            "ma n MD D100 v\\r\\n",
            "ma n M- D3 v\\r\\n",
            "ma n MI D5 v\\r\\n",
            "ma n M+ D18446744073709551615 v c\\r\\n",
            "ma n v c\\r\\n",
            "ma n v q\\r\\n",
            "ma n q\\r\\n",
            "mg n v\\r\\n",
            "ma n C1 v\\r\\n",
            "ma n C1 q O1 k\\r\\n",
            "ma n C0 v\\r\\n",
            "ma new N30 J7 t v T90 c q\\r\\n",
            "mg new t v\\r\\n",
            "ma new2 N30 t\\r\\n",
            "ma new3 T30 N60 t\\r\\n",
            "mg new3 t\\r\\n",
            "ma new4 MD N30 J5 D2 v\\r\\n",
            "ma new5 N0 v q\\r\\n",
            "ms txt 3\\r\\nabc\\r\\n",
            "ma txt v\\r\\n",
            "ma txt q\\r\\n",
            "ms pad 3\\r\\n10 \\r\\n",
            "ma pad v\\r\\n",
            "ms big 2\\r\\n99\\r\\n",
            "ma big D1 MD v\\r\\n",
            "mg big v s\\r\\n",
            // Hit-before across arithmetic: in place keeps it, a longer
            // number is a new item.
            "ms hb 1\\r\\n7\\r\\n",
            "mg hb v\\r\\n",
            "ma hb\\r\\n",
            "mg hb h v\\r\\n",
            "ma hb D5\\r\\n",
            "mg hb h v\\r\\n",
            // `T` on a result that needs a new item changes only the old
            // copy: `t` after it shows the new ttl, the item keeps none.
            // In place, `T` sticks, and a `t` before it shows the old one.
            "ms tx 1\\r\\n7\\r\\n",
            "ma tx T3600 D5 t v\\r\\n",
            "mg tx t v\\r\\n",
            "ma tx t T3600 D1 t v\\r\\n",
            "mg tx t v\\r\\n",
            // me shapes.
            "me a\\r\\n",
            "me nokey\\r\\n",
            "me s extra\\r\\n",
            "ms tt 2 T60\\r\\nab\\r\\n",
            "me tt\\r\\n",
            "me\\r\\n",
            "me !! b\\r\\n",
        ]),
    );
    // Pin a few replies of the reference itself, so a change in what the
    // comparison accepts cannot hide a wrong table.
    assert_eq!(show(&want[0]), "EN\\r\\n");
    assert_eq!(show(&want[2]), "");
    assert_eq!(show(&want[9]), "HD\\r\\n");
}

#[test]
fn errors_and_data_blocks_match_memcached() {
    let big = 1_048_577;
    let mut lines: Vec<Vec<u8>> = steps(&[
        // Parse errors are always sent, quiet or not.
        "mg\\r\\n",
        "mg foo Tabc zz\\r\\n",
        "mg foo q zz\\r\\n",
        "md foo q zz\\r\\n",
        "ma foo q MX\\r\\n",
        "ma foo Mi\\r\\n",
        "mg foo S5\\r\\n",
        "mg foo v v\\r\\n",
        // Refused ms line: block swallowed after the length is known...
        "ms foo 2 zz\\r\\nab\\r\\n",
        "ms foo 2 q MX\\r\\nab\\r\\n",
        "ms foo 2 Fx Tx\\r\\nab\\r\\n",
        // ...and parsed as commands before.
        "ms foo x\\r\\nab\\r\\n",
        // Bad data chunk: sent even with q; leftovers are commands.
        "ms foo 2 c k O1 q\\r\\nabX\\r\\n",
        "ms foo 2 q\\r\\nabXY",
        "mg foo v\\r\\n",
        // Too large: swallowed, error, existing item removed, any mode.
        "ms big 2\\r\\nab\\r\\n",
    ]);
    for mode in ["T5", "T5 q MA"] {
        let mut step = format!("ms big {big} {mode}\r\n").into_bytes();
        step.extend(std::iter::repeat_n(b'x', big));
        step.extend_from_slice(b"\r\n");
        lines.push(step);
        lines.extend(steps(&["mg big v\\r\\n", "ms big 2\\r\\nab\\r\\n"]));
    }
    // The largest value that still fits (48 + key + 1 + value + 2 + 8).
    let fit = 1_048_576 - 48 - 4 - 2 - 8;
    for len in [fit, fit + 1] {
        let mut step = format!("ms bnd {len} c\r\n").into_bytes();
        step.extend(std::iter::repeat_n(b'y', len));
        step.extend_from_slice(b"\r\n");
        lines.push(step);
        lines.extend(steps(&["mg bnd s\\r\\n"]));
    }
    let want = compare("errors", &lines);
    assert_eq!(show(&want[8]), "CLIENT_ERROR invalid flag\\r\\n");
    assert_eq!(
        show(&want[11]),
        "CLIENT_ERROR bad command line format\\r\\nERROR\\r\\n"
    );
}

#[test]
fn stampede_sequences_match_memcached() {
    let want = compare(
        "stampede",
        &steps(&[
            // Vivify on miss.
            "mg st1 v c t N30\\r\\n",
            "mg st1 v c t N30\\r\\n",
            "mg st1 v c t N30 q\\r\\n",
            "mg st1 h\\r\\n",
            "ms st1 3 T60\\r\\nnew\\r\\n",
            "mg st1 v c t N30\\r\\n",
            "mg st9 s v N30 t\\r\\n",
            "mg st8 t N30 T90 s f h l c k O1\\r\\n",
            "mg st8 t\\r\\n",
            "mg st7 T90 t N30 q\\r\\n",
            "mg st7 t\\r\\n",
            "mg st6 N30 q\\r\\n",
            // Invalidate, then repeated fetches.
            "ms st2 3 T60\\r\\nold\\r\\n",
            "md st2 I T30\\r\\n",
            "mg st2 v c t\\r\\n",
            "mg st2 v c t\\r\\n",
            "ms st2 3 T60\\r\\nnew\\r\\n",
            "mg st2 v c t\\r\\n",
            "md nope I\\r\\n",
            "ms st3 3 T30\\r\\nold\\r\\n",
            "md st3 I q\\r\\n",
            "mg st3 c\\r\\n",
            // A stale-cas set keeps the item stale, its ttl and token.
            "ms st3 3 C1 I\\r\\nnew\\r\\n",
            "mg st3 v c t\\r\\n",
            "ms st3 3 C1 I MA\\r\\nnew\\r\\n",
            "ms st3 3 C1 I MR\\r\\nnew\\r\\n",
            "ms st3 3 C99999 I\\r\\nnew\\r\\n",
            "mg st3 v t\\r\\n",
            "md st3 I T0\\r\\n",
            "mg st3 t c\\r\\n",
            "md st3 I T-1\\r\\n",
            "mg st3 t c\\r\\n",
            // Recache.
            "ms st4 3 T20\\r\\nabc\\r\\n",
            "mg st4 v t R30\\r\\n",
            "mg st4 v t R30\\r\\n",
            "mg st4 v t R10\\r\\n",
            "ms st5 3 T0\\r\\nabc\\r\\n",
            "mg st5 v t R30\\r\\n",
            "ms st10 3 T100\\r\\nabc\\r\\n",
            "mg st10 t R30\\r\\n",
            "mg st10 t R0\\r\\n",
            "mg st10 t R-1\\r\\n",
            "mg st10 R300 t\\r\\n",
            // Refused for a too-long opaque (found while the reply is
            // written): fetched, vivified and touched by the flags before
            // the opaque, but no win token is marked.
            "ms so1 2\\r\\nv0\\r\\n",
            "md so1 I\\r\\n",
            "mg so1 v Ooooooooooooooooooooooooooooooooooooooo\\r\\n",
            "mg so1 c k h f\\r\\n",
            "mg so1 c k h f\\r\\n",
            "mg so2 N30 R30 Ooooooooooooooooooooooooooooooooooooooo\\r\\n",
            "mg so2 t v s c\\r\\n",
            "mg so3 Ooooooooooooooooooooooooooooooooooooooo N30\\r\\n",
            "mg so3 t v\\r\\n",
            "ms so4 1\\r\\nx\\r\\n",
            "mg so4 T30 Ooooooooooooooooooooooooooooooooooooooo\\r\\n",
            "mg so4 t h\\r\\n",
            "ms so8 1\\r\\nx\\r\\n",
            "mg so8 u T30 Ooooooooooooooooooooooooooooooooooooooo\\r\\n",
            "mg so8 t h\\r\\n",
            "ms so5 1\\r\\nx\\r\\n",
            "mg so5 Ooooooooooooooooooooooooooooooooooooooo T30\\r\\n",
            "mg so5 t h\\r\\n",
            "ms so6 1\\r\\nx\\r\\n",
            "mg so6 Ooooooooooooooooooooooooooooooooooooooo\\r\\n",
            "mg so6 h\\r\\n",
            "mg so7 Ooooooooooooooooooooooooooooooooooooooo\\r\\n",
        ]),
    );
    assert_eq!(show(&want[0]), "VA 0 c1 t-1 W\\r\\n\\r\\n");
    assert_eq!(show(&want[1]), "VA 0 c1 t30 Z\\r\\n\\r\\n");
}

/// The `k` of an item stored with a base64 key is echoed re-encoded even
/// when fetched by its plain key; this needs the engine's
/// `ItemRef::key_binary`.
#[test]
fn base64_keys_match_memcached() {
    compare(
        "base64",
        &steps(&[
            "ms Zm9v 2 b\\r\\nab\\r\\n",
            "ms Zm9v 2 b k c O99\\r\\nab\\r\\n",
            "mg foo k\\r\\n",
            "mg Zm9v b k v\\r\\n",
            "me foo\\r\\n",
            "me Zm9v b\\r\\n",
            "set bar 0 0 2\\r\\nab\\r\\n",
            "mg YmFy b k v\\r\\n",
            "me YmFy b\\r\\n",
            "mg YmF4 b N30 k\\r\\n",
            "mg bax k\\r\\n",
            "ma YmF5 b N0 J5 k\\r\\n",
            "mg bay k\\r\\n",
            "mg Zm9vYg== b k O2 q\\r\\n",
            "mg Zm9vYg== b k O2\\r\\n",
            "mg Zm9vYg== b O2 k v\\r\\n",
            "md Zm9vYg== b k O9\\r\\n",
            "ms foo 2 MA c\\r\\ncd\\r\\n",
            "mg foo k v\\r\\n",
            "ms Zm9v 2 b MA\\r\\nef\\r\\n",
            "mg foo k v\\r\\n",
            "ms Zm9v 2 b k\\r\\nab\\r\\n",
            "md Zm9v b k q\\r\\n",
            "mg foo k\\r\\n",
        ]),
    );
}

/// memcached refuses an empty value as non-numeric before it compares the
/// CAS; a non-empty one is compared first. This is the store's order.
#[test]
fn arith_checks_empty_value_before_cas_like_memcached() {
    let want = compare(
        "arith order",
        &steps(&[
            "ms z 0\\r\\n\\r\\n",
            "ma z C99\\r\\n",
            "ms y 2\\r\\nab\\r\\n",
            "ma y C99\\r\\n",
            "ms x 2\\r\\n10\\r\\n",
            "ma x C99 O1\\r\\n",
        ]),
    );
    assert_eq!(
        show(&want[1]),
        "CLIENT_ERROR cannot increment or decrement non-numeric value\\r\\n"
    );
    assert_eq!(show(&want[3]), "EX\\r\\n");
}

#[test]
fn thousand_quiet_misses_then_mn_is_only_mn() {
    let mut pipeline = Vec::new();
    for i in 0..1000 {
        pipeline.extend_from_slice(format!("mg miss{i} q k O{i} v t\r\n").as_bytes());
    }
    for kind in [Kind::Memcached, Kind::Gannet] {
        let server = Server::start(kind, &[]);
        let mut client = server.connect();
        let reply = exchange(&mut client, &pipeline, kind.name());
        assert_eq!(show(&reply), "", "{}: quiet misses replied", kind.name());
        // `mn` ignores whatever follows it on the line.
        client.send(b"mn foo bar\r\n");
        let reply = read_until(&mut client, b"MN\r\n", kind.name());
        assert_eq!(
            show(&reply),
            "MN\\r\\n",
            "{}: mn with arguments",
            kind.name()
        );
        client.send(b"stats\r\n");
        let stats =
            String::from_utf8_lossy(&read_until(&mut client, b"END\r\n", "stats")).into_owned();
        assert!(
            stats.contains("STAT get_misses 1000\r\n"),
            "{}: {stats}",
            kind.name()
        );
    }
}

// ------------------------------------------------------------------------
// Gannet only: `E` and `x`.
//
// memcached 1.6.18 refuses both flags (checked first below), so these
// steps cannot be compared with it; gannet's replies are pinned to what
// memcached's current doc/protocol.txt ("Meta Commands") defines instead:
// `E(token)` is the CAS value of an item `mg` creates (`N`), of what `ms`
// stores, of an item `md` keeps (`I`, `x`) and of an `ma` result; `md x`
// removes the value but leaves the item. See docs/meta-notes.md.
// ------------------------------------------------------------------------

/// The number after `letter` in the flags of a one-line reply.
fn flag_number(reply: &[u8], letter: char) -> Option<i64> {
    let line = String::from_utf8_lossy(reply);
    let first = line.lines().next()?.to_string();
    first
        .split(' ')
        .skip(1)
        .find_map(|t| t.strip_prefix(letter)?.parse().ok())
}

#[test]
fn memcached_1_6_18_refuses_e_and_x() {
    let lines = steps(&[
        "mg foo E5\\r\\n",
        "mg foo x\\r\\n",
        "ms foo 2 E5\\r\\nab\\r\\n",
        "md foo x\\r\\n",
        "md foo E5\\r\\n",
        "ma foo E5\\r\\n",
    ]);
    let (want, _) = run(Kind::Memcached, &lines);
    let shown: Vec<String> = want.iter().map(|r| show(r)).collect();
    assert_eq!(
        shown,
        [
            "CLIENT_ERROR invalid flag\\r\\n",
            "CLIENT_ERROR invalid flag\\r\\n",
            "CLIENT_ERROR invalid flag\\r\\n",
            "CLIENT_ERROR invalid or duplicate flag\\r\\n",
            "CLIENT_ERROR invalid or duplicate flag\\r\\n",
            "CLIENT_ERROR invalid or duplicate flag\\r\\n",
        ]
    );
}

#[test]
fn gannet_new_cas_flag_follows_protocol_txt() {
    let lines = steps(&[
        // 0-5 ms: the stored item takes E as its CAS, in every mode.
        "ms a 2 E100 c\\r\\nab\\r\\n",
        "mg a c v\\r\\n",
        "ms a 2 C100 E200 c\\r\\nxy\\r\\n",
        "ms a 2 C100 E250\\r\\nzz\\r\\n",
        "ms a 1 MA E300 c\\r\\nq\\r\\n",
        "mg a v c\\r\\n",
        // 6-8 mg: E is the CAS of the item N creates; a hit is not
        // modified by mg, so E leaves its CAS alone.
        "mg n N30 E400 c v\\r\\n",
        "mg n c\\r\\n",
        "mg a T60 E999 c\\r\\n",
        // 9-10 ma: created and updated values take E.
        "ma cnt N0 J5 E500 c v\\r\\n",
        "ma cnt E501 c v\\r\\n",
        // 11-13 md I: the stale item takes E instead of a new CAS.
        "md a I E600\\r\\n",
        "mg a c v\\r\\n",
        "ms a 2 C600 E700 c\\r\\nok\\r\\n",
        // 14 a bad E token.
        "mg a Ex\\r\\n",
        // 15-16 E0 is the same as no E: the next CAS is taken.
        "ms z 1 E0 c\\r\\n1\\r\\n",
        "mg z c\\r\\n",
    ]);
    let (got, stats) = run(Kind::Gannet, &lines);
    let shown: Vec<String> = got.iter().map(|r| show(r)).collect();
    assert_eq!(
        shown[..15],
        [
            "HD c100\\r\\n",
            "VA 2 c100\\r\\nab\\r\\n",
            "HD c200\\r\\n",
            "EX\\r\\n",
            "HD c300\\r\\n",
            "VA 3 c300\\r\\nxyq\\r\\n",
            "VA 0 c400 W\\r\\n\\r\\n",
            "HD c400 Z\\r\\n",
            "HD c300\\r\\n",
            "VA 1 c500\\r\\n5\\r\\n",
            "VA 1 c501\\r\\n6\\r\\n",
            "HD\\r\\n",
            "VA 3 c600 X W\\r\\nxyq\\r\\n",
            "HD c700\\r\\n",
            "CLIENT_ERROR bad token in command line format\\r\\n",
        ]
    );
    let c0 = flag_number(&got[15], 'c').expect("c on E0 store");
    assert!(c0 > 0 && ![100, 200, 300, 400, 500, 501, 600, 700].contains(&c0));
    assert_eq!(flag_number(&got[16], 'c'), Some(c0));
    assert_eq!(stats.get("cas_hits").map(String::as_str), Some("2"));
    assert_eq!(stats.get("cas_badval").map(String::as_str), Some("1"));
}

#[test]
fn gannet_md_x_clears_the_value_and_keeps_the_item() {
    let lines = steps(&[
        // 0-3: x alone: value gone, item kept with flags 0, its ttl and
        // its CAS; a hit, not a stale item.
        "ms b 5 F7 T100 c E800\\r\\nhello\\r\\n",
        "md b x\\r\\n",
        "mg b s f c v\\r\\n",
        "mg b t\\r\\n",
        // 4-7: quiet, C checked, E sets the kept item's CAS.
        "md b x q\\r\\n",
        "md b x C1\\r\\n",
        "md b x C800 E900 k O7\\r\\n",
        "mg b c\\r\\n",
        // 8: a miss.
        "md nokey x\\r\\n",
        // 9-10: with I and T: a stale empty tombstone, new ttl, E CAS.
        "md b x I E1000 T30\\r\\n",
        "mg b c v t\\r\\n",
        // 11-12: the tombstone can still be deleted.
        "md b\\r\\n",
        "mg b v\\r\\n",
        // 13-15: x with I and no E bumps the CAS like I alone.
        "ms d 3 c E50\\r\\nabc\\r\\n",
        "md d x I\\r\\n",
        "mg d c s\\r\\n",
    ]);
    let (got, stats) = run(Kind::Gannet, &lines);
    let shown: Vec<String> = got.iter().map(|r| show(r)).collect();
    assert_eq!(show(&got[0]), "HD c800\\r\\n");
    assert_eq!(show(&got[1]), "HD\\r\\n");
    assert_eq!(show(&got[2]), "VA 0 s0 f0 c800\\r\\n\\r\\n");
    let t = flag_number(&got[3], 't').expect("ttl kept");
    assert!((98..=100).contains(&t), "ttl {t}: {}", shown[3]);
    assert_eq!(
        shown[4..10],
        [
            "",
            "EX\\r\\n",
            "HD kb O7\\r\\n",
            "HD c900\\r\\n",
            "NF\\r\\n",
            "HD\\r\\n",
        ]
    );
    assert!(
        shown[10].starts_with("VA 0 c1000 t") && shown[10].ends_with(" X W\\r\\n\\r\\n"),
        "{}",
        shown[10]
    );
    let t = flag_number(&got[10], 't').expect("ttl from T");
    assert!((28..=30).contains(&t), "ttl {t}: {}", shown[10]);
    assert_eq!(shown[11..13], ["HD\\r\\n", "EN\\r\\n"]);
    assert_eq!(shown[13], "HD c50\\r\\n");
    let c = flag_number(&got[15], 'c').expect("c after md x I");
    assert!(c != 50 && c > 0, "{}", shown[15]);
    assert_eq!(flag_number(&got[15], 's'), Some(0));
    // x without I is a delete hit (steps 1, 4, 6 and the plain md at 11);
    // the C mismatch and the miss are delete misses.
    assert_eq!(stats.get("delete_hits").map(String::as_str), Some("4"));
    assert_eq!(stats.get("delete_misses").map(String::as_str), Some("2"));
}
