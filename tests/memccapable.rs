//! libmemcached's `memccapable -a` (its 27 ASCII-protocol tests) passes
//! against gannet.
//!
//! The same run against the real memcached proves the harness and the
//! parsing of memccapable's report. The tool must exit with status 0, print
//! `[pass]` for every test it ran, print no `[FAIL]`, run at least the
//! expected ASCII tests and end with `All tests passed`. Its output is
//! printed on failure. The run is killed after 60 s.

mod common;

use common::{require_file, Kind, Server, MEMCCAPABLE};

/// The ASCII tests memccapable 1.x runs with `-a`.
const ASCII_TESTS: &[&str] = &[
    "ascii version",
    "ascii quit",
    "ascii verbosity",
    "ascii set",
    "ascii set noreply",
    "ascii get",
    "ascii gets",
    "ascii mget",
    "ascii flush",
    "ascii flush noreply",
    "ascii add",
    "ascii add noreply",
    "ascii replace",
    "ascii replace noreply",
    "ascii cas",
    "ascii cas noreply",
    "ascii delete",
    "ascii delete noreply",
    "ascii incr",
    "ascii incr noreply",
    "ascii decr",
    "ascii decr noreply",
    "ascii append",
    "ascii append noreply",
    "ascii prepend",
    "ascii prepend noreply",
    "ascii stat",
];

fn run_memccapable(kind: Kind) {
    require_file(MEMCCAPABLE);
    let server = Server::start(kind, &[]);
    let (status, out, err) = common::run_memccapable(server.port(), "-a");
    let report = format!(
        "{} memccapable -a: status {status:?}\n--- stdout\n{out}\n--- stderr\n{err}",
        server.describe()
    );

    let status = status.unwrap_or_else(|| panic!("timed out after 60 s\n{report}"));
    let passed: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_end().ends_with("[pass]"))
        .map(|l| l.trim_end().trim_end_matches("[pass]").trim_end())
        .collect();
    let failed: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("[FAIL]") || l.contains("[fail]"))
        .collect();
    let missing: Vec<&&str> = ASCII_TESTS.iter().filter(|t| !passed.contains(t)).collect();
    assert!(failed.is_empty(), "failing tests: {failed:?}\n{report}");
    assert!(
        missing.is_empty(),
        "tests not passed: {missing:?}\n{report}"
    );
    assert!(
        out.contains("All tests passed"),
        "no 'All tests passed'\n{report}"
    );
    assert!(status.success(), "non-zero exit\n{report}");
}

#[test]
fn memccapable_ascii_passes_on_memcached() {
    run_memccapable(Kind::Memcached);
}

#[test]
fn memccapable_ascii_passes_on_gannet() {
    run_memccapable(Kind::Gannet);
}
