//! Text-protocol authentication (`-Y <authfile>`), as memcached 1.6.18
//! runs it, plus the credential helpers both protocols can share.
//!
//! The auth file holds `user:password` lines. memcached's rules for it:
//! at most 8 entries are used (later lines are ignored); a line needs a
//! `:` before its end, so an empty line (a trailing blank line included)
//! makes the whole file malformed; the password runs from the first `:` to
//! the end of the line (`\r`, `\n` or a NUL byte), so it may hold further
//! colons. A file that cannot be read or is malformed stops memcached at
//! start: [`check_at_start`] gives the same messages. Lines longer than
//! 255 bytes (undefined behaviour in memcached) are refused as malformed.
//!
//! With `-Y`, a text connection is unauthenticated until it sends
//! `set <key> <flags> <exptime> <bytes>\r\n<user> <password>\r\n` (key,
//! flags and exptime are ignored; nothing is stored). memcached's gate,
//! reproduced byte for byte:
//!
//! - A line with fewer than five space-separated tokens, whose first token
//!   is not exactly `set`, or whose fifth is not a valid unsigned number,
//!   answers `CLIENT_ERROR unauthenticated` and the connection stays open.
//!   This covers every other command (meta, `quit`, `version`, …) and
//!   binary packets, which are read as text.
//! - The data block must end in `\r\n`, else `CLIENT_ERROR bad command
//!   line termination`. Its first two space-separated tokens are the user
//!   and password (more tokens are ignored); fewer than two answers
//!   `CLIENT_ERROR bad authentication token format`.
//! - A match answers `STORED` and counts `auth_cmds`; a mismatch answers
//!   `CLIENT_ERROR authentication failure` and counts `auth_cmds` and
//!   `auth_errors`. `noreply` is ignored: the gate always answers.
//! - All gate replies of one batch of pipelined requests share a single
//!   reply slot in memcached, so each replaces the one before: only the
//!   last gate reply of a batch reaches the client.
//! - 2048 buffered bytes without a newline close the connection, without
//!   sending a reply still pending. A declared block larger than
//!   memcached's 16 KiB read buffer can never complete there (memcached
//!   closes the connection once its buffer is full); gannet closes at once.
//!
//! Passwords are compared in constant time and every entry is compared,
//! so the time depends on neither where a user appears nor whether it
//! exists.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::text::Progress;
use super::{Action, Ctx};
use crate::protocol::number;

/// memcached reads at most this many entries.
const MAX_ENTRIES: usize = 8;
/// memcached reads a line in chunks of this size minus one.
const MAX_ENTRY_LEN: usize = 256;
/// Unterminated input after which the connection is closed.
const MAX_LINE_UNAUTH: usize = 2048;
/// memcached's read buffer: a gate request must fit in it.
const READ_BUFFER_SIZE: usize = 16384;

/// One `user:password` entry.
#[derive(Debug, Clone)]
struct Entry {
    user: Box<[u8]>,
    password: Box<[u8]>,
}

/// The parsed `-Y` file.
#[derive(Debug, Clone, Default)]
pub struct AuthFile {
    entries: Vec<Entry>,
}

/// Why an auth file cannot be used.
#[derive(Debug)]
pub enum LoadError {
    Open(std::io::Error),
    Malformed,
}

impl AuthFile {
    /// Read and parse `path`.
    pub fn load(path: &Path) -> Result<AuthFile, LoadError> {
        let bytes = std::fs::read(path).map_err(LoadError::Open)?;
        AuthFile::parse(&bytes)
    }

    /// Parse the file's bytes with memcached's rules (see the module doc).
    pub fn parse(bytes: &[u8]) -> Result<AuthFile, LoadError> {
        let mut entries = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() && entries.len() < MAX_ENTRIES {
            let nl = rest.iter().position(|&b| b == b'\n');
            let line = &rest[..nl.unwrap_or(rest.len())];
            let nul = line.iter().position(|&b| b == 0);
            let text = &line[..nul.unwrap_or(line.len())];
            if text.len() >= MAX_ENTRY_LEN - 1 {
                return Err(LoadError::Malformed);
            }
            let colon = text
                .iter()
                .position(|&b| b == b':')
                .ok_or(LoadError::Malformed)?;
            let password = &text[colon + 1..];
            let end = password
                .iter()
                .position(|&b| b == b'\r')
                .unwrap_or(password.len());
            entries.push(Entry {
                user: text[..colon].into(),
                password: password[..end].into(),
            });
            // A NUL ends the file for memcached, as does the last line.
            match (nul, nl) {
                (None, Some(nl)) => rest = &rest[nl + 1..],
                _ => break,
            }
        }
        Ok(AuthFile { entries })
    }

    /// Number of entries in use.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no login can succeed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when some entry has exactly this user and password. Every
    /// entry is compared, each in constant time.
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        let mut ok = false;
        for e in &self.entries {
            let hit = ct_eq(&e.user, user) & ct_eq(&e.password, password);
            ok |= hit;
        }
        std::hint::black_box(ok)
    }
}

/// Constant-time equality: the time depends only on the lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// memcached's start-up check of `-Y`: `Err` holds the message it prints
/// before exiting with status 1.
pub fn check_at_start(path: &Path) -> Result<(), String> {
    match AuthFile::load(path) {
        Ok(file) => {
            store(path, file);
            Ok(())
        }
        Err(LoadError::Open(e)) => Err(format!(
            "Could not open authfile [{}] for reading, error {e}",
            path.display()
        )),
        Err(LoadError::Malformed) => Err(format!(
            "Authfile [{}] has a malformed entry. Should be 'user:password'",
            path.display()
        )),
    }
}

/// Re-read the file (memcached does on SIGHUP); on error the previous
/// credentials stay in force.
pub fn reload(path: &Path) -> Result<(), LoadError> {
    let file = AuthFile::load(path)?;
    store(path, file);
    Ok(())
}

type Cache = Mutex<Option<(PathBuf, Arc<AuthFile>)>>;

static CACHE: Cache = Mutex::new(None);

fn store(path: &Path, file: AuthFile) {
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    *c = Some((path.to_path_buf(), Arc::new(file)));
}

/// The credentials of `path`, read once (on first use when
/// [`check_at_start`] did not already). An unreadable file lets nobody in.
fn credentials(path: &Path) -> Arc<AuthFile> {
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((p, f)) = c.as_ref() {
        if p == path {
            return Arc::clone(f);
        }
    }
    let file = AuthFile::load(path).unwrap_or_else(|e| {
        crate::logging::stderr_line(format_args!(
            "auth file {}: {e:?}: every login fails",
            path.display()
        ));
        AuthFile::default()
    });
    let file = Arc::new(file);
    *c = Some((path.to_path_buf(), Arc::clone(&file)));
    file
}

/// Per-connection state of the `-Y` gate, kept in the text session.
#[derive(Debug, Default)]
pub struct TextAuth {
    /// The connection sent valid credentials.
    authenticated: bool,
    /// Where the last gate reply sits in the output buffer: the next gate
    /// reply replaces it while it is still the buffer's tail.
    /// (u32 offsets: the output buffer of one batch stays far below
    /// 4 GiB, and this lives in every connection.)
    last_reply: Option<(u32, u32)>,
}

/// What the gate did with the front of the input.
pub enum Gate {
    /// Not a gated connection (no `-Y`, or already authenticated).
    Open,
    /// A request was handled: drop this many input bytes.
    Consumed(usize),
    /// Incomplete request; this many bytes are needed (0: unknown).
    Wait(usize),
    /// Close the connection.
    Close,
}

impl TextAuth {
    /// True once the connection authenticated.
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// Run the gate on `buf` (the unconsumed input), appending its reply.
    pub fn gate(&mut self, ctx: &Ctx, buf: &[u8], out: &mut Vec<u8>) -> Gate {
        if self.authenticated {
            return Gate::Open;
        }
        let Some(path) = ctx.shared.settings.auth_file.as_deref() else {
            return Gate::Open;
        };
        if buf.len() < 2 {
            return Gate::Wait(0);
        }
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            if buf.len() > MAX_LINE_UNAUTH {
                self.drop_pending(out);
                return Gate::Close;
            }
            return Gate::Wait(0);
        };
        let line = until_nul(&buf[..nl]);
        let mut toks = tokens(line);
        let first = toks.next();
        let size = toks.nth(3).and_then(number::strtoul);
        let (Some(b"set"), Some(size)) = (first, size) else {
            self.reply(out, "CLIENT_ERROR unauthenticated");
            return Gate::Consumed(nl + 1);
        };
        let Some(block_len) = size.checked_add(2).map(|n| n as usize) else {
            return Gate::Close;
        };
        if block_len > READ_BUFFER_SIZE {
            self.drop_pending(out);
            return Gate::Close;
        }
        let total = nl + 1 + block_len;
        if buf.len() < total {
            return Gate::Wait(total);
        }
        let block = &buf[nl + 1..total];
        let Some(data) = block.strip_suffix(b"\r\n") else {
            self.reply(out, "CLIENT_ERROR bad command line termination");
            return Gate::Consumed(total);
        };
        let mut creds = tokens(until_nul(data));
        let (Some(user), Some(password)) = (creds.next(), creds.next()) else {
            self.reply(out, "CLIENT_ERROR bad authentication token format");
            return Gate::Consumed(total);
        };
        let stats = &ctx.stats.ops;
        stats.auth_cmds.incr();
        if credentials(path).check(user, password) {
            self.authenticated = true;
            self.reply(out, "STORED");
        } else {
            stats.auth_errors.incr();
            self.reply(out, "CLIENT_ERROR authentication failure");
        }
        Gate::Consumed(total)
    }

    /// Append a gate reply, replacing the previous one of this batch.
    fn reply(&mut self, out: &mut Vec<u8>, msg: &str) {
        self.drop_pending(out);
        let start = out.len();
        out.extend_from_slice(msg.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.last_reply = Some((start as u32, out.len() as u32));
    }

    /// Remove the previous gate reply if it is still unsent at the tail.
    fn drop_pending(&mut self, out: &mut Vec<u8>) {
        if let Some((start, end)) = self.last_reply.take() {
            let (start, end) = (start as usize, end as usize);
            if out.len() == end && start < end {
                out.truncate(start);
            }
        }
    }
}

/// Run the gate for `Session::process`: `None` lets the request through
/// the normal path; `Some` is either "consumed `n` bytes" (`Ok`) or the
/// progress to return now (`Err`).
pub fn text_hook(
    auth: &mut TextAuth,
    ctx: &Ctx,
    buf: &[u8],
    out: &mut Vec<u8>,
    consumed: usize,
    requests: usize,
) -> Option<Result<usize, Progress>> {
    let done = |action, need| Progress {
        consumed,
        requests,
        action,
        need,
        more: false,
    };
    match auth.gate(ctx, buf, out) {
        Gate::Open => None,
        Gate::Consumed(n) => Some(Ok(n)),
        Gate::Wait(need) => Some(Err(done(Action::Continue, need))),
        Gate::Close => Some(Err(done(Action::Close, 0))),
    }
}

/// memcached works on NUL-terminated strings: a NUL ends the text.
fn until_nul(s: &[u8]) -> &[u8] {
    &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
}

/// Tokens separated by runs of spaces (only `' '`, as memcached).
fn tokens(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|&b| b == b' ').filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_memcached() {
        let f = AuthFile::parse(b"alice:secret\r\nbob:a:b\ncarol:").unwrap();
        assert_eq!(f.len(), 3);
        assert!(f.check(b"alice", b"secret"));
        assert!(f.check(b"bob", b"a:b"));
        assert!(f.check(b"carol", b""));
        assert!(!f.check(b"alice", b"secre"));
        assert!(!f.check(b"alice", b"secret "));
        assert!(!f.check(b"dave", b"secret"));
        assert!(matches!(
            AuthFile::parse(b"a:b\n\n"),
            Err(LoadError::Malformed)
        ));
        assert!(matches!(
            AuthFile::parse(b"nocolon\n"),
            Err(LoadError::Malformed)
        ));
        assert!(AuthFile::parse(b"").unwrap().is_empty());
        let many: Vec<u8> = (0..10)
            .flat_map(|i| format!("u{i}:p\n").into_bytes())
            .collect();
        let f = AuthFile::parse(&many).unwrap();
        assert_eq!(f.len(), 8);
        assert!(!f.check(b"u8", b"p"));
        // Duplicate users: any matching line lets the client in.
        let f = AuthFile::parse(b"a:1\na:2\n").unwrap();
        assert!(f.check(b"a", b"1") && f.check(b"a", b"2"));
    }

    #[test]
    fn ct_eq_is_equality() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"ab\0", b"ab"));
        assert!(!ct_eq(b"", b"\0"));
    }
}
