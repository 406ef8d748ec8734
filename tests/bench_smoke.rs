//! CI smoke test of the load generator, `gannet-bench`, against the debug
//! gannet.
//!
//! Why: `benches/compare.sh` is run by hand on a quiet machine, so nothing
//! else would notice if the generator broke (stopped parsing a reply kind,
//! miscounted hits, stopped honouring `--rate`). Each case runs it for
//! about a second and checks only that it ran and that its counts agree
//! with what the workload implies: after a prefill every get is a hit, on
//! an empty cache every get is a miss, nothing is an error. Performance is
//! not asserted here (CI machines are shared).

mod common;

use std::process::Command;

use common::{Kind, Server};

/// Run gannet-bench against `server` with `args` (plus `--json`) and
/// return its one-line JSON report.
fn bench(server: &Server, args: &[&str]) -> String {
    let port = server.port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_gannet-bench"))
        .args(["-p", &port, "--json", "-w", "0.2", "-d", "1"])
        .args(args)
        .output()
        .expect("run gannet-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "gannet-bench {args:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or("").to_string();
    assert!(
        line.starts_with('{') && line.ends_with('}'),
        "not a JSON line: {stdout}"
    );
    line
}

/// A numeric field of the report (`None` for `null` or absent).
fn num(json: &str, name: &str) -> Option<f64> {
    let pat = format!("\"{name}\":");
    let at = json.find(&pat)? + pat.len();
    let rest = &json[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

fn get(json: &str, name: &str) -> f64 {
    num(json, name).unwrap_or_else(|| panic!("no number {name} in {json}"))
}

/// The checks every run must pass.
fn sane(json: &str) {
    assert!(get(json, "ops") > 0.0, "no operations: {json}");
    assert_eq!(get(json, "errors"), 0.0, "errors: {json}");
    assert_eq!(get(json, "closed"), 0.0, "connections lost: {json}");
    assert_eq!(
        get(json, "ops"),
        get(json, "gets") + get(json, "sets"),
        "{json}"
    );
    assert_eq!(
        get(json, "get_keys"),
        get(json, "hits") + get(json, "misses"),
        "{json}"
    );
    assert!(get(json, "p50_us") > 0.0, "{json}");
    assert!(get(json, "p99_us") >= get(json, "p50_us"), "{json}");
}

/// After a prefill every get hits, whatever the protocol or batching.
fn all_hits(json: &str) {
    sane(json);
    assert!(get(json, "gets") > 0.0, "no gets: {json}");
    assert_eq!(get(json, "misses"), 0.0, "misses after prefill: {json}");
    assert_eq!(get(json, "hit_ratio"), 1.0, "{json}");
}

#[test]
fn text_mix_with_pipelining_after_prefill() {
    let s = Server::start(Kind::Gannet, &[]);
    let j = bench(
        &s,
        &[
            "--prefill",
            "-n",
            "3000",
            "-c",
            "4",
            "-P",
            "8",
            "--ratio",
            "9:1",
        ],
    );
    all_hits(&j);
    assert!(get(&j, "sets") > 0.0, "no sets: {j}");
}

#[test]
fn text_multiget_after_prefill() {
    let s = Server::start(Kind::Gannet, &[]);
    let j = bench(
        &s,
        &[
            "--prefill",
            "-n",
            "3000",
            "-c",
            "2",
            "-m",
            "20",
            "--ratio",
            "1:0",
        ],
    );
    all_hits(&j);
    assert_eq!(get(&j, "get_keys"), 20.0 * get(&j, "gets"), "{j}");
}

#[test]
fn binary_mix_and_multiget_after_prefill() {
    let s = Server::start(Kind::Gannet, &[]);
    let j = bench(
        &s,
        &[
            "--protocol",
            "binary",
            "--prefill",
            "-n",
            "3000",
            "-c",
            "4",
            "-P",
            "8",
        ],
    );
    all_hits(&j);
    let j = bench(
        &s,
        &[
            "--protocol",
            "binary",
            "-n",
            "3000",
            "-c",
            "2",
            "-m",
            "10",
            "--ratio",
            "1:0",
        ],
    );
    all_hits(&j);
    assert_eq!(get(&j, "get_keys"), 10.0 * get(&j, "gets"), "{j}");
}

#[test]
fn empty_cache_gets_all_miss() {
    let s = Server::start(Kind::Gannet, &[]);
    for proto in ["text", "binary"] {
        let j = bench(
            &s,
            &[
                "--protocol",
                proto,
                "-n",
                "1000",
                "-m",
                "5",
                "--ratio",
                "1:0",
            ],
        );
        sane(&j);
        assert_eq!(get(&j, "hits"), 0.0, "{proto}: hits on an empty cache: {j}");
        assert!(get(&j, "misses") > 0.0, "{j}");
    }
}

#[test]
fn open_loop_holds_its_rate() {
    let s = Server::start(Kind::Gannet, &[]);
    let j = bench(
        &s,
        &[
            "--prefill",
            "-n",
            "1000",
            "-c",
            "4",
            "-P",
            "16",
            "-r",
            "2000",
        ],
    );
    all_hits(&j);
    let ops = get(&j, "ops");
    // 2000/s for 1 s; a slow start may complete a little backlog late.
    assert!((1000.0..=3000.0).contains(&ops), "rate not held: {j}");
}

#[test]
fn cache_aside_zipf_fills_the_cache() {
    let s = Server::start(Kind::Gannet, &[]);
    let j = bench(
        &s,
        &[
            "-n",
            "20000",
            "--zipf",
            "1",
            "--cache-aside",
            "-m",
            "4",
            "--ratio",
            "1:0",
        ],
    );
    sane(&j);
    // Sets come only from misses; hot keys then hit.
    assert!(get(&j, "sets") > 0.0, "{j}");
    assert!(get(&j, "hits") > 0.0, "{j}");
    assert!(get(&j, "hit_ratio") > 0.3, "{j}");
}

/// A fake server that answers every read with `reply` (or closes at once
/// when `reply` is empty). Returns its port; its threads end with the test
/// process.
fn fake_server(reply: Vec<u8>) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { return };
            let reply = reply.clone();
            std::thread::spawn(move || {
                if reply.is_empty() {
                    return;
                }
                let mut buf = [0u8; 65536];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Bad replies are counted as errors (or end the connection); the
/// generator never panics or hangs on them.
#[test]
fn bad_replies_are_errors_not_panics() {
    let mut noise = Vec::with_capacity(4096);
    let mut x: u32 = 0x1234_5678;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x as u8);
    }
    let mut bad_lengths = vec![0x81, 0x00, 0, 100, 0, 0, 0, 0, 0, 0, 0, 10];
    bad_lengths.extend_from_slice(&[0; 12]);
    // (protocol, reply, whether an error must be counted)
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("text", b"SERVER_ERROR boom\r\n".to_vec(), true),
        ("text", b"VALUE nope 0 5\r\nhello\r\nEND\r\n".to_vec(), true),
        ("text", b"VALUE k 0 zz\r\n".to_vec(), true),
        ("text", b"VALUE k 0 99999999999999\r\n".to_vec(), false),
        (
            "text",
            b"STORED\r\nSTORED\r\nEND\r\nEND\r\nEND\r\n".to_vec(),
            true,
        ),
        ("text", Vec::new(), true),
        ("text", noise.clone(), false),
        ("binary", vec![0u8; 24], true),
        ("binary", bad_lengths, true),
        ("binary", Vec::new(), true),
        ("binary", noise, false),
    ];
    for (proto, reply, must_err) in cases {
        let port = fake_server(reply.clone()).to_string();
        let out = Command::new(env!("CARGO_BIN_EXE_gannet-bench"))
            .args(["-p", &port, "--json", "-w", "0", "-d", "0.3"])
            .args(["--protocol", proto, "-c", "2", "-P", "4", "-m", "3"])
            .output()
            .expect("run gannet-bench");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let what = format!("{proto} reply {:?}", String::from_utf8_lossy(&reply));
        assert!(
            out.status.success(),
            "{what}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let j = stdout.lines().last().unwrap_or("");
        if must_err {
            assert!(get(j, "errors") > 0.0, "{what}: no error counted: {j}");
        }
    }
}
