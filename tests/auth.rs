//! Text-protocol authentication (`-Y <authfile>`), run against the
//! reference memcached and gannet with the same auth file: every reply is
//! compared byte for byte with the expected bytes, and so is whether the
//! connection stays open.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{show, Kind, Server};

const UNAUTH: &[u8] = b"CLIENT_ERROR unauthenticated\r\n";
const FAILURE: &[u8] = b"CLIENT_ERROR authentication failure\r\n";
const FORMAT: &[u8] = b"CLIENT_ERROR bad authentication token format\r\n";
const TERMINATION: &[u8] = b"CLIENT_ERROR bad command line termination\r\n";

/// A temporary auth file, removed on drop.
struct AuthFile(PathBuf);

impl AuthFile {
    fn new(name: &str, contents: &str) -> AuthFile {
        let path =
            std::env::temp_dir().join(format!("gannet-auth-{}-{name}.txt", std::process::id()));
        std::fs::write(&path, contents).expect("write auth file");
        // memcached may run as `nobody`: the file must be world-readable.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .expect("chmod auth file");
        AuthFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for AuthFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const USERS: &str = "alice:secret\nbob:pw2\r\ncarol:with:colon\n";

/// One step: bytes to send, the exact reply expected, whether the server
/// must have closed the connection afterwards.
struct Step {
    send: Vec<u8>,
    expect: &'static [u8],
    closed: bool,
}

fn step(send: &[u8], expect: &'static [u8]) -> Step {
    Step {
        send: send.to_vec(),
        expect,
        closed: false,
    }
}

fn closes(send: Vec<u8>) -> Step {
    Step {
        send,
        expect: b"",
        closed: true,
    }
}

/// Run `steps` on one fresh connection to each server.
fn run_session(servers: &[Server], name: &str, steps: &[Step]) {
    for server in servers {
        let mut c = server.connect();
        for (i, s) in steps.iter().enumerate() {
            let r = if s.closed {
                c.send(&s.send);
                c.wait_close(Duration::from_secs(5))
            } else {
                c.exchange(&s.send, s.expect.len())
            };
            let what = format!(
                "{}: session {name}, step {i} (sent {})",
                server.kind().name(),
                show(&s.send[..s.send.len().min(80)])
            );
            assert_eq!(show(&r.bytes), show(s.expect), "{what}: reply");
            assert_eq!(r.closed, s.closed, "{what}: connection closed?");
        }
    }
}

fn both(file: &AuthFile) -> Vec<Server> {
    vec![
        Server::start(Kind::Memcached, &["-Y", file.path()]),
        Server::start(Kind::Gannet, &["-Y", file.path()]),
    ]
}

#[test]
fn text_auth_matches_memcached() {
    let file = AuthFile::new("sessions", USERS);
    let servers = both(&file);
    let binary_get = {
        let mut p = vec![0u8; 24];
        p[0] = 0x80;
        p
    };
    let sessions: Vec<(&str, Vec<Step>)> = vec![
        (
            "every other command is refused, connection kept",
            vec![
                step(b"get foo\r\n", UNAUTH),
                step(b"version\r\n", UNAUTH),
                step(b"stats\r\n", UNAUTH),
                step(b"mg foo v\r\n", UNAUTH),
                step(b"ms foo 2\r\nhi\r\n", UNAUTH),
                step(b"quit\r\n", UNAUTH),
                step(b"\r\n", UNAUTH),
                step(b"sets k 0 0 12\r\n", UNAUTH),
                step(b"set k 0 0\r\n", UNAUTH),
                step(b"set k 0 0 -1\r\n", UNAUTH),
                step(b"set k 0 0 12x\r\n", UNAUTH),
                step(b"set k 0 0 12\r\nalice secret\r\n", b"STORED\r\n"),
                step(b"get k\r\n", b"END\r\n"),
            ],
        ),
        (
            "wrong credentials, then right ones",
            vec![
                step(b"set k 0 0 11\r\nalice wrong\r\n", FAILURE),
                step(b"get k\r\n", UNAUTH),
                step(b"set k 0 0 10\r\nbob secret\r\n", FAILURE),
                step(b"set k 0 0 10\r\neve secret\r\n", FAILURE),
                step(b"set k 0 0 10\r\ncarol with\r\n", FAILURE),
                step(b"set k 0 0 16\r\ncarol with:colon\r\n", b"STORED\r\n"),
                step(
                    b"set k2 0 0 2\r\nhi\r\nget k2\r\n",
                    b"STORED\r\nVALUE k2 0 2\r\nhi\r\nEND\r\n",
                ),
                step(b"mn\r\n", b"MN\r\n"),
            ],
        ),
        (
            "data block shapes",
            vec![
                step(b"set k 0 0 5\r\nalice\r\n", FORMAT),
                step(b"set k 0 0 0\r\n\r\n", FORMAT),
                step(b"set k 0 0 12\r\nalice secretXX", TERMINATION),
                step(b"get k\r\n", UNAUTH),
                step(b"set k 0 0 7\r\nbob pw2\n\n", TERMINATION),
                step(b"set k 0 0 20\r\n  alice  secret  xyz\r\n", b"STORED\r\n"),
                step(b"get k\r\n", b"END\r\n"),
            ],
        ),
        (
            "noreply is ignored by the gate",
            vec![
                step(b"set k 0 0 11 noreply\r\nalice wrong\r\n", FAILURE),
                step(b"set k 0 0 7 noreply\r\nbob pw2\r\n", b"STORED\r\n"),
                step(
                    b"set k3 0 0 1 noreply\r\nx\r\nget k3\r\n",
                    b"VALUE k3 0 1\r\nx\r\nEND\r\n",
                ),
            ],
        ),
        (
            "pipelined gate replies replace each other",
            vec![
                step(b"get a\r\nget b\r\nversion\r\n", UNAUTH),
                step(b"set k 0 0 11\r\nalice wrong\r\nget c\r\n", UNAUTH),
                step(b"get c\r\nset k 0 0 11\r\nalice wrong\r\n", FAILURE),
                step(
                    b"set k 0 0 11\r\nalice wrong\r\nset k 0 0 7\r\nbob pw2\r\nget k\r\nmn\r\n",
                    b"STORED\r\nEND\r\nMN\r\n",
                ),
            ],
        ),
        (
            "request split across writes",
            vec![
                step(b"se", b""),
                step(b"t k 0 0 7\r\n", b""),
                step(b"bob ", b""),
                step(b"pw2\r", b""),
                step(b"\n", b"STORED\r\n"),
                step(b"get k\r\n", b"END\r\n"),
            ],
        ),
        (
            "a binary packet is read as text",
            vec![
                step(&binary_get, b""),
                step(b"\n", UNAUTH),
                step(b"get k\r\n", UNAUTH),
            ],
        ),
        (
            "2048 bytes without a newline close, dropping a pending reply",
            vec![closes([b"get x\r\n".as_slice(), &[b'a'; 3000]].concat())],
        ),
        (
            "a block that cannot fit the read buffer closes",
            // memcached closes once its 16 KiB buffer is full, gannet as
            // soon as it reads the line: both close without a reply.
            vec![closes(
                [b"set k 0 0 100000\r\n".as_slice(), &[b'a'; 20000]].concat(),
            )],
        ),
    ];
    for (name, steps) in &sessions {
        run_session(&servers, name, steps);
    }
}

/// `auth_cmds` counts every checked credential, `auth_errors` the wrong
/// ones; the refused shapes (unauthenticated, bad format, bad termination)
/// count neither.
#[test]
fn auth_counters_match_memcached() {
    let file = AuthFile::new("counters", USERS);
    for server in both(&file) {
        let mut c = server.connect();
        let attempts: [(&[u8], &[u8]); 6] = [
            (b"get k\r\n", UNAUTH),
            (b"set k 0 0 11\r\nalice wrong\r\n", FAILURE),
            (b"set k 0 0 5\r\nalice\r\n", FORMAT),
            (b"set k 0 0 3\r\nabcde", TERMINATION),
            (b"set k 0 0 8\r\nnobody x\r\n", FAILURE),
            (b"set k 0 0 12\r\nalice secret\r\n", b"STORED\r\n"),
        ];
        for (send, expect) in attempts {
            let r = c.exchange(send, expect.len());
            assert_eq!(show(&r.bytes), show(expect), "{}", server.kind().name());
        }
        let r = c.exchange(b"stats\r\n", usize::MAX);
        let text = String::from_utf8_lossy(&r.bytes).into_owned();
        assert!(
            text.ends_with("END\r\n"),
            "{}: {text}",
            server.kind().name()
        );
        let stat = |name: &str| -> String {
            common::stat_value(&text, name)
                .unwrap_or_else(|| panic!("{}: no {name}", server.kind().name()))
                .to_string()
        };
        let got = (stat("auth_cmds"), stat("auth_errors"));
        assert_eq!(got, ("3".into(), "2".into()), "{}", server.kind().name());
        // A second connection must authenticate again.
        let mut c2 = server.connect();
        let r = c2.exchange(b"get k\r\n", UNAUTH.len());
        assert_eq!(show(&r.bytes), show(UNAUTH), "{}", server.kind().name());
        assert!(!r.closed);
    }
}

/// The file's own rules: at most 8 entries count, a password runs to the
/// end of the line (colons included, `\r` excluded), duplicate users all
/// work.
#[test]
fn auth_file_rules_match_memcached() {
    let mut contents = String::from("dup:one\ndup:two\r\n");
    for i in 0..8 {
        contents.push_str(&format!("user{i}:pass{i}\n"));
    }
    let file = AuthFile::new("rules", &contents);
    let servers = both(&file);
    let cases: [(&[u8], &[u8]); 5] = [
        (b"set k 0 0 7\r\ndup one\r\n", b"STORED\r\n"),
        (b"set k 0 0 7\r\ndup two\r\n", b"STORED\r\n"),
        (b"set k 0 0 8\r\ndup two\r\r\n", FAILURE),
        (b"set k 0 0 11\r\nuser5 pass5\r\n", b"STORED\r\n"),
        // Entry 9 and later are ignored.
        (b"set k 0 0 11\r\nuser6 pass6\r\n", FAILURE),
    ];
    for (send, expect) in cases {
        let name = format!("single attempt {}", show(send));
        run_session(&servers, &name, &[step(send, expect)]);
    }
}

/// memcached refuses to start when the `-Y` file cannot be read (exit 1).
#[test]
fn unreadable_auth_file_stops_the_start_like_memcached() {
    for program in [env!("CARGO_BIN_EXE_gannet"), common::MEMCACHED] {
        let out = std::process::Command::new(program)
            .args([
                "-p",
                "0",
                "-U",
                "0",
                "-u",
                "nobody",
                "-Y",
                "/nonexistent/gannet-auth",
            ])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{program}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Could not open authfile [/nonexistent/gannet-auth] for reading"),
            "{program}: {err}"
        );
    }
}
