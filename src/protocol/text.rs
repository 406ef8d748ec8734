//! memcached's classic text protocol: framing, tokens and command lines.
//!
//! The parser works on whatever bytes have arrived and borrows from them:
//! `frame` finds one command line (or says more bytes are needed, or that
//! the client sent too much without a newline), `parse_line` turns the line
//! into a typed `Command` or the exact error memcached answers with.
//!
//! Error precedence copies memcached's `process_command_ascii`: the token
//! count is checked per command before anything else, `noreply` is
//! noticed before the key length, and a storage command whose line is bad
//! does not swallow its data block (the block is then parsed as commands).
//! Deciding that a value is too large needs the item size limit, so that
//! check belongs to `exec`.

use super::number::{push_u64, strtol, strtoul, strtoull};

/// Longest key memcached accepts.
pub const KEY_MAX_LENGTH: usize = 250;
/// A line longer than this without a newline closes the connection,
/// unless it is a `get`/`gets` (multi-gets may be long).
pub const LINE_MAX: usize = 2048;
/// memcached tokenizes at most this many tokens (the last holds the rest).
const MAX_TOKENS: usize = 24;

/// Result of looking for one command line in the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// No newline yet; keep the bytes and wait for more.
    Incomplete,
    /// More than `LINE_MAX` bytes without a newline and not a multi-get:
    /// memcached closes the connection without a reply.
    TooLong,
    /// One line (without its `\n`, and without a `\r` before it), and the
    /// number of input bytes it used including the line end.
    Line { line: &'a [u8], consumed: usize },
}

/// Find the next command line in `buf`. `max_get_line` bounds how long a
/// multi-get line may grow before it too is refused.
pub fn frame(buf: &[u8], max_get_line: usize) -> Frame<'_> {
    match memchr(b'\n', buf) {
        Some(nl) => {
            let mut end = nl;
            if nl > 1 && buf[nl - 1] == b'\r' {
                end = nl - 1;
            }
            Frame::Line {
                line: &buf[..end],
                consumed: nl + 1,
            }
        }
        None => {
            if buf.len() <= LINE_MAX {
                return Frame::Incomplete;
            }
            let spaces = buf.iter().take_while(|&&b| b == b' ').count();
            let rest = &buf[spaces..];
            let is_get = rest.starts_with(b"get ") || rest.starts_with(b"gets ");
            if spaces > 100 || !is_get || buf.len() > max_get_line {
                Frame::TooLong
            } else {
                Frame::Incomplete
            }
        }
    }
}

#[inline]
fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Space-separated tokens of a line, as memcached's `tokenize_command`
/// (only `' '` separates; runs of spaces make no empty tokens).
#[derive(Clone)]
pub struct Tokens<'a> {
    rest: &'a [u8],
}

impl<'a> Tokens<'a> {
    pub fn new(line: &'a [u8]) -> Self {
        Tokens { rest: line }
    }

    /// The unsplit remainder (leading spaces removed).
    pub fn remainder(&self) -> &'a [u8] {
        let skip = self.rest.iter().take_while(|&&b| b == b' ').count();
        &self.rest[skip..]
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let skip = self.rest.iter().take_while(|&&b| b == b' ').count();
        let rest = &self.rest[skip..];
        if rest.is_empty() {
            self.rest = rest;
            return None;
        }
        let len = memchr(b' ', rest).unwrap_or(rest.len());
        self.rest = &rest[len..];
        Some(&rest[..len])
    }
}

/// The storage commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreCmd {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// A parsed command line. Keys and lists borrow from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `get`/`gets`/`gat`/`gats`, and `bget` (an undocumented old alias
    /// of `get` that memcached still answers). `keys` is the rest of the
    /// line; walk it with `Tokens` (a key over 250 bytes is found while
    /// walking).
    Get {
        keys: &'a [u8],
        cas: bool,
        /// For `gat`/`gats`: the exptime argument as sent.
        touch: Option<i64>,
    },
    Store {
        cmd: StoreCmd,
        key: &'a [u8],
        flags: u32,
        exptime: i64,
        /// Length of the data block (without its `\r\n`).
        bytes: usize,
        cas: u64,
        noreply: bool,
    },
    Delete {
        key: &'a [u8],
        noreply: bool,
    },
    Arith {
        incr: bool,
        key: &'a [u8],
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: &'a [u8],
        exptime: i64,
        noreply: bool,
    },
    /// `flush_all [delay]`; `delay` is `None` when the argument is not a
    /// number (an error, but only once flush_all is known to be allowed).
    FlushAll {
        delay: Option<i64>,
        noreply: bool,
    },
    Version,
    Verbosity {
        level: u32,
        noreply: bool,
    },
    Quit,
    /// An unknown command whose last token starts with `HTTP/` (at most
    /// the 23rd token counts, as in memcached's tokenizer): memcached takes
    /// the line for an HTTP request and closes the connection without a
    /// reply, after the replies before it, as `quit` does.
    HttpRequest,
    /// `refresh_certs` (any arguments are ignored, as memcached does).
    RefreshCerts,
    /// `shutdown [graceful]`: `Some(graceful)`, or `None` for another
    /// argument (an error, but only once shutdown is enabled).
    Shutdown {
        mode: Option<bool>,
    },
    CacheMemlimit {
        megabytes: u32,
        noreply: bool,
    },
    /// `stats [args...]`: the argument tokens, unsplit.
    Stats {
        args: &'a [u8],
    },
    /// A meta command (`mg ms md ma mn me`): the whole line, for the meta
    /// parser.
    Meta {
        line: &'a [u8],
    },
    /// Administrative commands whose arguments `exec` interprets
    /// (`slabs`, `lru`, `lru_crawler`, `watch`, `extstore`, and the debug-build-only
    /// `debugtime` and `debugpanic`): name and unsplit arguments.
    Admin {
        name: &'a [u8],
        args: &'a [u8],
    },
}

/// An error reply decided by the parser: memcached's exact text, and
/// whether `noreply` had already been seen (which suppresses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub msg: &'static str,
    pub noreply: bool,
}

pub const ERROR: &str = "ERROR";
pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
pub const BAD_DELETE: &str = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";
pub const BAD_EXPTIME: &str = "CLIENT_ERROR invalid exptime argument";
pub const BAD_DELTA: &str = "CLIENT_ERROR invalid numeric delta argument";
pub const BAD_SHUTDOWN: &str = "CLIENT_ERROR invalid shutdown mode";
pub const SHUTDOWN_DISABLED: &str = "ERROR: shutdown not enabled";

fn reject(msg: &'static str) -> Reject {
    Reject {
        msg,
        noreply: false,
    }
}

/// Parse one command line (as returned by `frame`).
pub fn parse_line(line: &[u8]) -> Result<Command<'_>, Reject> {
    // Collect up to MAX_TOKENS - 1 tokens; memcached counts a final empty
    // token, so `ntokens` below matches its numbers.
    let mut toks: [&[u8]; MAX_TOKENS] = [&[]; MAX_TOKENS];
    let mut n = 0;
    let mut it = Tokens::new(line);
    while n < MAX_TOKENS - 1 {
        match it.next() {
            Some(t) => {
                toks[n] = t;
                n += 1;
            }
            None => break,
        }
    }
    if n == MAX_TOKENS - 1 && !it.remainder().is_empty() {
        // memcached keeps the rest of the line as one more token.
        toks[n] = it.remainder();
        n += 1;
    }
    let ntokens = n + 1;
    if n == 0 || toks[0].len() < 2 {
        return Err(reject(ERROR));
    }
    let cmd = toks[0];
    let want = |ok: bool| if ok { Ok(()) } else { Err(reject(ERROR)) };
    match cmd {
        b"get" | b"gets" | b"gat" | b"gats" | b"bget" => {
            want(ntokens >= 3)?;
            let cas = cmd == b"gets" || cmd == b"gats";
            let mut rest = Tokens::new(line);
            rest.next();
            if cmd.len() >= 3 && cmd[1] == b'a' {
                let exp = rest.next().unwrap_or(b"");
                let exptime = strtol(exp).ok_or(reject(BAD_EXPTIME))? as i64;
                return Ok(Command::Get {
                    keys: rest.remainder(),
                    cas,
                    touch: Some(exptime),
                });
            }
            Ok(Command::Get {
                keys: rest.remainder(),
                cas,
                touch: None,
            })
        }
        b"set" | b"add" | b"replace" | b"append" | b"prepend" => {
            want(ntokens == 6 || ntokens == 7)?;
            let sc = match cmd {
                b"set" => StoreCmd::Set,
                b"add" => StoreCmd::Add,
                b"replace" => StoreCmd::Replace,
                b"append" => StoreCmd::Append,
                _ => StoreCmd::Prepend,
            };
            parse_store(sc, &toks[..n])
        }
        b"cas" => {
            want(ntokens == 7 || ntokens == 8)?;
            parse_store(StoreCmd::Cas, &toks[..n])
        }
        b"delete" => {
            want((3..=5).contains(&ntokens))?;
            let mut noreply = false;
            if ntokens > 3 {
                let hold_is_zero = toks[2] == b"0";
                noreply = toks[n - 1] == b"noreply";
                let valid = (ntokens == 4 && (hold_is_zero || noreply))
                    || (ntokens == 5 && hold_is_zero && noreply);
                if !valid {
                    return Err(Reject {
                        msg: BAD_DELETE,
                        noreply,
                    });
                }
            }
            let key = toks[1];
            if key.len() > KEY_MAX_LENGTH {
                return Err(Reject {
                    msg: BAD_FORMAT,
                    noreply,
                });
            }
            Ok(Command::Delete { key, noreply })
        }
        b"incr" | b"decr" => {
            want(ntokens == 4 || ntokens == 5)?;
            let noreply = toks[n - 1] == b"noreply";
            let err = |msg| Reject { msg, noreply };
            let key = toks[1];
            if key.len() > KEY_MAX_LENGTH {
                return Err(err(BAD_FORMAT));
            }
            let delta = strtoull(toks[2]).ok_or(err(BAD_DELTA))?;
            Ok(Command::Arith {
                incr: cmd == b"incr",
                key,
                delta,
                noreply,
            })
        }
        b"touch" => {
            want(ntokens == 4 || ntokens == 5)?;
            let noreply = toks[n - 1] == b"noreply";
            let err = |msg| Reject { msg, noreply };
            let key = toks[1];
            if key.len() > KEY_MAX_LENGTH {
                return Err(err(BAD_FORMAT));
            }
            let exptime = strtol(toks[2]).ok_or(err(BAD_EXPTIME))? as i64;
            Ok(Command::Touch {
                key,
                exptime,
                noreply,
            })
        }
        b"flush_all" => {
            want((2..=4).contains(&ntokens))?;
            let noreply = toks[n - 1] == b"noreply";
            let mut delay = Some(0);
            if ntokens != if noreply { 3 } else { 2 } {
                delay = strtol(toks[1]).map(i64::from);
            }
            Ok(Command::FlushAll { delay, noreply })
        }
        b"version" => Ok(Command::Version),
        b"quit" => Ok(Command::Quit),
        b"refresh_certs" => Ok(Command::RefreshCerts),
        b"verbosity" => {
            want(ntokens == 3 || ntokens == 4)?;
            let noreply = toks[n - 1] == b"noreply";
            let level = strtoul(toks[1]).ok_or(Reject {
                msg: BAD_FORMAT,
                noreply,
            })?;
            Ok(Command::Verbosity { level, noreply })
        }
        b"shutdown" => Ok(Command::Shutdown {
            mode: match ntokens {
                2 => Some(false),
                3 if toks[1] == b"graceful" => Some(true),
                _ => None,
            },
        }),
        b"cache_memlimit" => {
            want(ntokens == 3 || ntokens == 4)?;
            let noreply = toks[n - 1] == b"noreply";
            let megabytes = strtoul(toks[1]).ok_or(Reject {
                msg: ERROR,
                noreply,
            })?;
            Ok(Command::CacheMemlimit { megabytes, noreply })
        }
        b"stats" => {
            let mut rest = Tokens::new(line);
            rest.next();
            Ok(Command::Stats {
                args: rest.remainder(),
            })
        }
        b"mg" | b"ms" | b"md" | b"ma" | b"mn" | b"me" => Ok(Command::Meta { line }),
        b"slabs" | b"lru" | b"lru_crawler" | b"watch" | b"extstore" | b"debugtime"
        | b"debugpanic" => {
            let mut rest = Tokens::new(line);
            rest.next();
            Ok(Command::Admin {
                name: cmd,
                args: rest.remainder(),
            })
        }
        _ => unknown_command(cmd, &toks[..n.min(MAX_TOKENS - 1)]),
    }
}

/// memcached's answer to a command it does not know. A name starting with
/// a letter it dispatches on (`g s a c i d t`, or `m` and two bytes) gets
/// `ERROR` from that branch; any other goes to its last branch, which
/// closes on an HTTP request line. Only tokenized words count there: the
/// rest of a line past the 23rd word is not looked at.
fn unknown_command<'a>(cmd: &[u8], words: &[&[u8]]) -> Result<Command<'a>, Reject> {
    let grouped = matches!(cmd[0], b'g' | b's' | b'a' | b'c' | b'i' | b'd' | b't')
        || (cmd[0] == b'm' && cmd.len() == 2);
    match words.last() {
        Some(last) if !grouped && last.starts_with(b"HTTP/") => Ok(Command::HttpRequest),
        _ => Err(reject(ERROR)),
    }
}

fn parse_store<'a>(cmd: StoreCmd, toks: &[&'a [u8]]) -> Result<Command<'a>, Reject> {
    let noreply = toks[toks.len() - 1] == b"noreply";
    let bad = Reject {
        msg: BAD_FORMAT,
        noreply,
    };
    let key = toks[1];
    if key.len() > KEY_MAX_LENGTH {
        return Err(bad);
    }
    let flags = strtoul(toks[2]).ok_or(bad)?;
    let exptime = strtol(toks[3]).ok_or(bad)? as i64;
    let len = strtol(toks[4]).ok_or(bad)?;
    let mut cas = 0;
    if cmd == StoreCmd::Cas {
        cas = strtoull(toks[5]).ok_or(bad)?;
    }
    if !(0..=i32::MAX - 2).contains(&len) {
        return Err(bad);
    }
    Ok(Command::Store {
        cmd,
        key,
        flags,
        exptime,
        bytes: len as usize,
        cas,
        noreply,
    })
}

/// Append `VALUE <key> <flags> <bytes>[ <cas>]\r\n`.
#[inline]
pub fn push_value_header(
    out: &mut Vec<u8>,
    key: &[u8],
    flags: u32,
    bytes: usize,
    cas: Option<u64>,
) {
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    out.push(b' ');
    push_u64(out, flags as u64);
    out.push(b' ');
    push_u64(out, bytes as u64);
    if let Some(c) = cas {
        out.push(b' ');
        push_u64(out, c);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Result<Command<'_>, Reject> {
        parse_line(s.as_bytes())
    }

    #[test]
    fn frames_lines() {
        assert_eq!(frame(b"get a", 1 << 20), Frame::Incomplete);
        assert_eq!(
            frame(b"get a\r\nrest", 1 << 20),
            Frame::Line {
                line: b"get a",
                consumed: 7
            }
        );
        assert_eq!(
            frame(b"get a\nx", 1 << 20),
            Frame::Line {
                line: b"get a",
                consumed: 6
            }
        );
        // "\r\n" alone keeps its '\r' (memcached strips only after byte 1).
        assert_eq!(
            frame(b"\r\n", 1 << 20),
            Frame::Line {
                line: b"\r",
                consumed: 2
            }
        );
        assert_eq!(
            frame(b"\n", 1 << 20),
            Frame::Line {
                line: b"",
                consumed: 1
            }
        );
    }

    #[test]
    fn long_lines_close_unless_get() {
        let junk = vec![b'x'; LINE_MAX + 1];
        assert_eq!(frame(&junk, 1 << 20), Frame::TooLong);
        let mut get = b"get ".to_vec();
        get.resize(LINE_MAX + 10, b'k');
        assert_eq!(frame(&get, 1 << 20), Frame::Incomplete);
        assert_eq!(frame(&get, LINE_MAX), Frame::TooLong);
        let mut spaced = vec![b' '; 101];
        spaced.extend_from_slice(b"get ");
        spaced.resize(LINE_MAX + 10, b'k');
        assert_eq!(frame(&spaced, 1 << 20), Frame::TooLong);
        // Exactly LINE_MAX bytes still waits.
        assert_eq!(frame(&junk[..LINE_MAX], 1 << 20), Frame::Incomplete);
    }

    #[test]
    fn tokens_skip_runs_of_spaces() {
        let t: Vec<&[u8]> = Tokens::new(b"  get  a   b ").collect();
        assert_eq!(t, vec![&b"get"[..], b"a", b"b"]);
        assert_eq!(Tokens::new(b"").next(), None);
    }

    #[test]
    fn bget_is_get() {
        assert_eq!(
            line("bget a b"),
            Ok(Command::Get {
                keys: b"a b",
                cas: false,
                touch: None
            })
        );
        assert_eq!(line("bget").unwrap_err().msg, ERROR);
    }

    #[test]
    fn http_request_lines_close_unless_a_dispatched_letter_answers() {
        let http = |s: &str| line(s) == Ok(Command::HttpRequest);
        assert!(http("GET / HTTP/1.1"));
        assert!(http("POST /x HTTP/1.0"));
        assert!(http("HTTP/1.1"));
        assert!(http("xx HTTP/"));
        assert!(http("misbehave HTTP/1.0"));
        // The three-letter `m` names reach the last branch; two-letter ones
        // and the g/s/a/c/i/d/t families answer ERROR in their own branch.
        assert!(http("mzz HTTP/1.1"));
        // The letters are matched as sent: `Tx` is not in the `t` family.
        assert!(http("Tx HTTP/1.1"));
        for s in [
            "mz HTTP/1.1",
            "gx / HTTP/1.1",
            "delet / HTTP/1.1",
            "tx HTTP/1.1",
        ] {
            assert!(!http(s), "{s}");
        }
        // Only the last word counts, case and slash included.
        for s in ["GET HTTP/1.1 /", "xx http/1.1", "xx HTTP", "HTTP/1.1 x"] {
            assert_eq!(line(s).unwrap_err().msg, ERROR, "{s}");
        }
        // Past 23 words, the 23rd is the last one memcached tokenized.
        let words = |last: usize| {
            let mut w: Vec<String> = (1..=30).map(|i| format!("x{i}")).collect();
            w[last - 1] = "HTTP/1.1".into();
            w.join(" ")
        };
        assert!(http(&words(23)));
        assert!(!http(&words(24)));
        assert!(http(&words(23)[..words(23).find(" x24").unwrap()]));
    }

    #[test]
    fn parses_refresh_certs_with_any_arguments() {
        // memcached ignores the arguments (and `noreply`): it always answers.
        assert_eq!(line("refresh_certs"), Ok(Command::RefreshCerts));
        assert_eq!(line("refresh_certs a b noreply"), Ok(Command::RefreshCerts));
        assert_eq!(line("REFRESH_CERTS").unwrap_err().msg, ERROR);
    }

    #[test]
    fn parses_storage_commands() {
        assert_eq!(
            line("set foo 5 10 3"),
            Ok(Command::Store {
                cmd: StoreCmd::Set,
                key: b"foo",
                flags: 5,
                exptime: 10,
                bytes: 3,
                cas: 0,
                noreply: false
            })
        );
        assert_eq!(
            line("cas foo 0 -1 3 99 noreply"),
            Ok(Command::Store {
                cmd: StoreCmd::Cas,
                key: b"foo",
                flags: 0,
                exptime: -1,
                bytes: 3,
                cas: 99,
                noreply: true
            })
        );
        assert_eq!(line("set foo 0 0").unwrap_err().msg, ERROR);
        assert_eq!(line("cas foo 0 0 1").unwrap_err().msg, ERROR);
        assert_eq!(line("set foo 0 0 -1").unwrap_err().msg, BAD_FORMAT);
        assert_eq!(line("set foo x 0 1").unwrap_err().msg, BAD_FORMAT);
        assert_eq!(line("set foo 0 0 4294967295").unwrap_err().msg, BAD_FORMAT);
        assert_eq!(line("verbosity x").unwrap_err().msg, BAD_FORMAT);
        assert_eq!(line("set foo 0 0 2147483647").unwrap_err().msg, BAD_FORMAT);
        assert!(line("set foo 0 0 2147483645").is_ok());
        // Flags wrap like memcached's 64-bit strtoul into uint32_t.
        assert!(matches!(
            line("set foo 4294967296 0 1"),
            Ok(Command::Store { flags: 0, .. })
        ));
        assert_eq!(line("set foo -1 0 1").unwrap_err().msg, BAD_FORMAT);
        assert!(line("set foo 4294967295 0 1").is_ok());
        let long = format!("set {} 0 0 1 noreply", "k".repeat(251));
        assert_eq!(
            line(&long),
            Err(Reject {
                msg: BAD_FORMAT,
                noreply: true
            })
        );
        let ok = format!("set {} 0 0 1", "k".repeat(250));
        assert!(line(&ok).is_ok());
    }

    #[test]
    fn commands_are_case_sensitive() {
        assert_eq!(line("GET foo").unwrap_err().msg, ERROR);
        assert_eq!(line("Set foo 0 0 1").unwrap_err().msg, ERROR);
        assert_eq!(line("").unwrap_err().msg, ERROR);
        assert_eq!(line("g").unwrap_err().msg, ERROR);
    }

    #[test]
    fn parses_delete_forms() {
        assert_eq!(
            line("delete k"),
            Ok(Command::Delete {
                key: b"k",
                noreply: false
            })
        );
        assert!(line("delete k 0").is_ok());
        assert!(line("delete k noreply").is_ok());
        assert!(line("delete k 0 noreply").is_ok());
        assert_eq!(line("delete k 5").unwrap_err().msg, BAD_DELETE);
        assert_eq!(line("delete").unwrap_err().msg, ERROR);
        assert_eq!(line("delete a b c d").unwrap_err().msg, ERROR);
    }

    #[test]
    fn parses_get_variants() {
        assert_eq!(
            line("gets a b"),
            Ok(Command::Get {
                keys: b"a b",
                cas: true,
                touch: None
            })
        );
        assert_eq!(
            line("gat 10 a"),
            Ok(Command::Get {
                keys: b"a",
                cas: false,
                touch: Some(10)
            })
        );
        assert_eq!(line("gat x a").unwrap_err().msg, BAD_EXPTIME);
        assert_eq!(line("get").unwrap_err().msg, ERROR);
    }

    #[test]
    fn parses_arith_and_flush() {
        assert_eq!(line("incr k -1").unwrap_err().msg, BAD_DELTA);
        assert_eq!(
            line("decr k 18446744073709551615"),
            Ok(Command::Arith {
                incr: false,
                key: b"k",
                delta: u64::MAX,
                noreply: false
            })
        );
        assert_eq!(
            line("incr k 18446744073709551616").unwrap_err().msg,
            BAD_DELTA
        );
        assert_eq!(
            line("flush_all"),
            Ok(Command::FlushAll {
                delay: Some(0),
                noreply: false
            })
        );
        assert_eq!(
            line("flush_all noreply"),
            Ok(Command::FlushAll {
                delay: Some(0),
                noreply: true
            })
        );
        assert_eq!(
            line("flush_all 10 noreply"),
            Ok(Command::FlushAll {
                delay: Some(10),
                noreply: true
            })
        );
        assert_eq!(
            line("flush_all x"),
            Ok(Command::FlushAll {
                delay: None,
                noreply: false
            })
        );
    }

    #[test]
    fn encodes_value_header() {
        let mut out = Vec::new();
        push_value_header(&mut out, b"k", 7, 3, Some(42));
        assert_eq!(out, b"VALUE k 7 3 42\r\n");
    }
}
