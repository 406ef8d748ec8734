//! The meta text protocol (`mg` `ms` `md` `ma` `mn` `me`): request-line
//! parser and reply-line encoders.
//!
//! Clients such as pymemcache's meta client and the proxies built on the
//! meta protocol were written against memcached's own parser, so "close
//! enough" is not good enough: the same line has to be accepted or refused
//! with the same `CLIENT_ERROR` text, chosen by the same precedence, as
//! memcached 1.6.18 does. The odd corners below are therefore deliberate
//! and each one was checked against the real binary (see
//! `docs/meta-notes.md`):
//!
//! - the line ends at the first NUL byte and is split on spaces only, so a
//!   key may contain tabs or a lone `\r`;
//! - a flag is identified by the first byte of its token alone (`vxyz` is
//!   `v`), every command accepts every known flag, and a token starting with
//!   a byte >= 127 is reported as a *duplicate* flag;
//! - numbers follow C's `strtol`/`strtoull` (leading blanks, a sign,
//!   trailing blanks allowed) and are then truncated to the width memcached
//!   stores: `T2147483648` is a ttl of `i32::MIN`, `F4294967296` is flags 0;
//! - the opaque limit of 32 bytes counts the `O` itself.
//!
//! One deliberate departure: the flags `E(token)` (new CAS value) and `x`
//! (`md`: clear the value, keep the item), which 1.6.18 refuses with
//! `CLIENT_ERROR invalid flag`, are accepted as memcached's current
//! `doc/protocol.txt` defines them. Like every other flag they are
//! accepted by every keyed command; `E` takes an unsigned 64-bit number
//! (a bad one is `CLIENT_ERROR bad token in command line format`).
//!
//! The parser borrows every token from the line and never allocates, so it
//! can run on hostile input at line rate and be fuzzed on arbitrary bytes.
//! The command semantics (what `N`, `R`, `I` do to an item, which reply is
//! hidden by `q`) live in `exec`; this module only hands over the decoded
//! request and the pieces exec needs to write memcached's replies, in
//! request order, without `format!`.

use super::number::{push_u64, strtol, strtoull};

/// Longest key memcached accepts, counted on the key as sent (so for a
/// base64 key this limits the encoded form).
pub const KEY_MAX: usize = 250;

/// Longest opaque token, counting the leading `O` (so 31 bytes of value).
pub const OPAQUE_TOKEN_MAX: usize = 32;

/// A meta line with this many tokens or more (command and key included) is
/// refused with "options flags too long".
pub const TOKENS_MAX: usize = 20;

/// Largest `ms` data length memcached accepts (`INT_MAX - 2`).
pub const DATA_LEN_MAX: u32 = 2_147_483_645;

/// Largest decoded base64 key: 248 significant encoded bytes -> 186 bytes.
pub const DECODED_KEY_MAX: usize = KEY_MAX / 4 * 3;

/// The six meta commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaCommand {
    /// `mg <key> <flags>*`
    Get,
    /// `ms <key> <datalen> <flags>*` followed by a data block.
    Set,
    /// `md <key> <flags>*`
    Delete,
    /// `ma <key> <flags>*`
    Arithmetic,
    /// `mn`: answered `MN`, everything after the command is ignored.
    Noop,
    /// `me <key> [b]`: debug dump of one item.
    Debug,
}

impl MetaCommand {
    /// The two-letter command word.
    pub fn as_str(self) -> &'static str {
        match self {
            MetaCommand::Get => "mg",
            MetaCommand::Set => "ms",
            MetaCommand::Delete => "md",
            MetaCommand::Arithmetic => "ma",
            MetaCommand::Noop => "mn",
            MetaCommand::Debug => "me",
        }
    }

    fn from_token(token: &[u8]) -> Option<Self> {
        match token {
            b"mg" => Some(MetaCommand::Get),
            b"ms" => Some(MetaCommand::Set),
            b"md" => Some(MetaCommand::Delete),
            b"ma" => Some(MetaCommand::Arithmetic),
            b"mn" => Some(MetaCommand::Noop),
            b"me" => Some(MetaCommand::Debug),
            _ => None,
        }
    }
}

/// Why a meta line was refused. `as_str` is the exact line memcached
/// 1.6.18 sends (without `\r\n`); several variants share a text because
/// callers still need to tell them apart (see [`rejected_data_len`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaError {
    /// Not a meta command, or `mg`/`ms`/`md`/`ma` without a key: `ERROR`.
    UnknownCommand,
    /// Key longer than [`KEY_MAX`], `ms` without or with a bad data length,
    /// `me` without a key or with an undecodable base64 key.
    BadFormat,
    /// An `F` token that is not a number (memcached reports it with the
    /// generic text, unless a later token error replaced it).
    BadClientFlags,
    /// `mg` with [`TOKENS_MAX`] tokens or more.
    GetTooManyFlags,
    /// `ms` / `md` / `ma` with [`TOKENS_MAX`] tokens or more.
    TooManyFlags,
    /// A flag letter memcached does not know (`mg`, `ms`).
    InvalidFlag,
    /// A flag given twice, or a flag token starting with a byte >= 127.
    DuplicateFlag,
    /// `md` / `ma`: any invalid, duplicate or malformed flag.
    InvalidOrDuplicateFlag,
    /// Non-numeric `T`, `N`, `R` or `C` token.
    BadToken,
    /// `O` token longer than [`OPAQUE_TOKEN_MAX`].
    OpaqueTooLong,
    /// `M` token that is not exactly one character.
    ModeLength,
    /// `ms` with an `M` mode other than E A P R S.
    InvalidSetMode,
    /// `ma` with an `M` mode other than I + D -.
    InvalidArithMode,
    /// Non-numeric `D` token.
    InvalidDelta,
    /// Non-numeric `J` token.
    InvalidInitial,
    /// `b` given but the key is not base64.
    KeyDecode,
}

impl MetaError {
    /// memcached's reply line for this error, without the line ending.
    pub fn as_str(self) -> &'static str {
        match self {
            MetaError::UnknownCommand => "ERROR",
            MetaError::BadFormat | MetaError::BadClientFlags => {
                "CLIENT_ERROR bad command line format"
            }
            MetaError::GetTooManyFlags => "CLIENT_ERROR options flags are too long",
            MetaError::TooManyFlags => "CLIENT_ERROR options flags too long",
            MetaError::InvalidFlag => "CLIENT_ERROR invalid flag",
            MetaError::DuplicateFlag => "CLIENT_ERROR duplicate flag",
            MetaError::InvalidOrDuplicateFlag => "CLIENT_ERROR invalid or duplicate flag",
            MetaError::BadToken => "CLIENT_ERROR bad token in command line format",
            MetaError::OpaqueTooLong => "CLIENT_ERROR opaque token too long",
            MetaError::ModeLength => "CLIENT_ERROR incorrect length for M token",
            MetaError::InvalidSetMode => "CLIENT_ERROR invalid mode for ms M token",
            MetaError::InvalidArithMode => "CLIENT_ERROR invalid mode for ma M token",
            MetaError::InvalidDelta => "CLIENT_ERROR invalid numeric delta value",
            MetaError::InvalidInitial => "CLIENT_ERROR invalid numeric initial value",
            MetaError::KeyDecode => "CLIENT_ERROR error decoding key",
        }
    }
}

impl std::fmt::Display for MetaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for MetaError {}

/// Presence bitset over the flag letters `A`-`Z` and `a`-`z`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaFlags(u64);

impl MetaFlags {
    fn bit(letter: u8) -> Option<u64> {
        match letter {
            b'A'..=b'Z' => Some(1 << (letter - b'A')),
            b'a'..=b'z' => Some(1 << (26 + (letter - b'a'))),
            _ => None,
        }
    }

    /// Whether flag `letter` was given.
    pub fn has(self, letter: u8) -> bool {
        Self::bit(letter).is_some_and(|b| self.0 & b != 0)
    }

    fn insert(&mut self, letter: u8) {
        if let Some(b) = Self::bit(letter) {
            self.0 |= b;
        }
    }

    /// True when no flag was given.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// `ms` storage mode (`M` flag); `Set` when absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetMode {
    /// `ME`: add.
    Add,
    /// `MA`: append.
    Append,
    /// `MP`: prepend.
    Prepend,
    /// `MR`: replace.
    Replace,
    /// `MS` or no mode: set.
    Set,
}

/// `ma` direction (`M` flag); `Incr` when absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithMode {
    /// `MI` or `M+`.
    Incr,
    /// `MD` or `M-`.
    Decr,
}

/// One parsed meta request. Every slice borrows from the parsed line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaRequest<'a> {
    /// Which command.
    pub command: MetaCommand,
    /// The key as sent (still base64 when `flags.has(b'b')`); empty for `mn`.
    pub key: &'a [u8],
    /// `ms`: payload bytes that follow the line (plus `\r\n`); 0 otherwise.
    pub data_len: u32,
    /// Which flags were present.
    pub flags: MetaFlags,
    /// `O`: the opaque value without its `O` (at most 31 bytes).
    pub opaque: Option<&'a [u8]>,
    /// `T`: new ttl, as memcached's `int32` exptime.
    pub ttl: Option<i32>,
    /// `N`: vivify-on-miss ttl.
    pub vivify_ttl: Option<i32>,
    /// `R`: recache threshold in seconds of remaining ttl.
    pub recache_ttl: Option<i32>,
    /// `C`: compare-and-swap value.
    pub compare_cas: Option<u64>,
    /// `E`: the CAS value a created or modified item gets (memcached's
    /// current protocol; 1.6.18 refuses the flag).
    pub new_cas: Option<u64>,
    /// `F`: client flags (truncated to 32 bits as memcached does).
    pub client_flags: Option<u32>,
    /// `M`: the raw mode byte (validated for `ms` and `ma` only).
    pub mode: Option<u8>,
    /// `J`: `ma` initial value for auto-create.
    pub initial: Option<u64>,
    /// `D`: `ma` delta.
    pub delta: Option<u64>,
    /// The flag tokens, for [`MetaRequest::flag_tokens`].
    flag_section: &'a [u8],
}

impl<'a> MetaRequest<'a> {
    /// Whether the key was sent base64-encoded (`b`).
    pub fn is_base64(&self) -> bool {
        self.flags.has(b'b')
    }

    /// Whether `q` (quiet) was given.
    pub fn is_quiet(&self) -> bool {
        self.flags.has(b'q')
    }

    /// The key as stored: decoded into `buf` for a base64 key, else the key
    /// as sent. The parser already checked that it decodes.
    pub fn key_bytes<'b>(&'b self, buf: &'b mut [u8; DECODED_KEY_MAX]) -> &'b [u8] {
        if self.is_base64() {
            decode_key(self.key, buf).unwrap_or(self.key)
        } else {
            self.key
        }
    }

    /// `ms` mode; `Set` when absent or for other commands.
    pub fn set_mode(&self) -> SetMode {
        self.mode.and_then(set_mode).unwrap_or(SetMode::Set)
    }

    /// `ma` mode; `Incr` when absent or for other commands.
    pub fn arith_mode(&self) -> ArithMode {
        self.mode.and_then(arith_mode).unwrap_or(ArithMode::Incr)
    }

    /// `ma` delta, defaulting to 1 as memcached does.
    pub fn delta_or_default(&self) -> u64 {
        self.delta.unwrap_or(1)
    }

    /// Every flag token in request order, as `(letter, token)` where
    /// `token` includes the letter. memcached writes return flags in the
    /// order they were requested and applies `T`/`N` in that order too, so
    /// exec builds its reply by walking this.
    pub fn flag_tokens(&self) -> FlagTokens<'a> {
        FlagTokens {
            inner: Tokens::new(self.flag_section),
        }
    }
}

/// Iterator over a request's flag tokens; see [`MetaRequest::flag_tokens`].
#[derive(Clone, Debug)]
pub struct FlagTokens<'a> {
    inner: Tokens<'a>,
}

impl<'a> Iterator for FlagTokens<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let token = self.inner.next()?;
        token.first().map(|&letter| (letter, token))
    }
}

/// Space-separated tokens, as memcached's tokenizer splits them (spaces
/// only; runs of spaces collapse).
#[derive(Clone, Debug)]
struct Tokens<'a> {
    rest: &'a [u8],
}

impl<'a> Tokens<'a> {
    fn new(line: &'a [u8]) -> Self {
        Tokens { rest: line }
    }

    /// What has not been tokenized yet.
    fn remainder(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let tail = self.rest.get(start..)?;
        let len = tail.iter().position(|&b| b == b' ').unwrap_or(tail.len());
        let (token, after) = tail.split_at(len);
        self.rest = after;
        Some(token)
    }
}

/// An error plus, for `ms`, how much payload memcached swallows with it.
#[derive(Clone, Copy, Debug)]
struct Reject {
    error: MetaError,
    swallow: Option<u32>,
}

impl From<MetaError> for Reject {
    fn from(error: MetaError) -> Self {
        Reject {
            error,
            swallow: None,
        }
    }
}

/// Parses one meta command line, given without its line ending.
///
/// # Errors
///
/// The [`MetaError`] memcached 1.6.18 answers the same line with; for an
/// `ms` line, see [`rejected_data_len`] for the data block that follows.
pub fn parse_meta(line: &[u8]) -> Result<MetaRequest<'_>, MetaError> {
    parse_inner(line).map_err(|r| r.error)
}

/// For an `ms` line that [`parse_meta`] refused: the data length whose
/// block (that many bytes plus two, whatever they are) memcached reads and
/// discards after the error. `None` when the error came before the length
/// was understood; the following bytes are then parsed as commands.
/// Also `None` for lines that parse.
#[must_use]
pub fn rejected_data_len(line: &[u8]) -> Option<u32> {
    parse_inner(line).err().and_then(|r| r.swallow)
}

fn parse_inner(line: &[u8]) -> Result<MetaRequest<'_>, Reject> {
    // memcached handles the line as a C string.
    let line = line
        .iter()
        .position(|&b| b == 0)
        .and_then(|n| line.get(..n))
        .unwrap_or(line);
    let mut tokens = Tokens::new(line);
    let command = tokens
        .next()
        .and_then(MetaCommand::from_token)
        .ok_or(MetaError::UnknownCommand)?;
    let mut req = MetaRequest {
        command,
        key: &[],
        data_len: 0,
        flags: MetaFlags::default(),
        opaque: None,
        ttl: None,
        vivify_ttl: None,
        recache_ttl: None,
        compare_cas: None,
        new_cas: None,
        client_flags: None,
        mode: None,
        initial: None,
        delta: None,
        flag_section: &[],
    };
    match command {
        MetaCommand::Noop => return Ok(req),
        MetaCommand::Debug => return parse_debug(req, tokens).map_err(Reject::from),
        _ => {}
    }
    req.key = tokens.next().ok_or(MetaError::UnknownCommand)?;
    if req.key.len() > KEY_MAX {
        return Err(MetaError::BadFormat.into());
    }
    let after_key = tokens.remainder();
    let mut swallow = None;
    if command == MetaCommand::Set {
        if tokens.clone().next().is_none() {
            return Err(MetaError::BadFormat.into());
        }
        check_token_count(command, after_key)?;
        let len_token = tokens.next().ok_or(MetaError::BadFormat)?;
        let len = strtol(len_token).ok_or(MetaError::BadFormat)?;
        req.data_len = u32::try_from(len)
            .ok()
            .filter(|&n| n <= DATA_LEN_MAX)
            .ok_or(MetaError::BadFormat)?;
        swallow = Some(req.data_len);
    } else {
        check_token_count(command, after_key)?;
    }
    req.flag_section = tokens.remainder();
    parse_flags(&mut req).map_err(|error| Reject { error, swallow })?;
    Ok(req)
}

fn check_token_count(command: MetaCommand, after_key: &[u8]) -> Result<(), MetaError> {
    // Command and key are two tokens already.
    if Tokens::new(after_key).nth(TOKENS_MAX - 3).is_some() {
        return Err(if command == MetaCommand::Get {
            MetaError::GetTooManyFlags
        } else {
            MetaError::TooManyFlags
        });
    }
    Ok(())
}

fn parse_debug<'a>(
    mut req: MetaRequest<'a>,
    mut tokens: Tokens<'a>,
) -> Result<MetaRequest<'a>, MetaError> {
    req.key = tokens.next().ok_or(MetaError::BadFormat)?;
    if req.key.len() > KEY_MAX {
        return Err(MetaError::BadFormat);
    }
    // `me` looks at exactly one optional token, and only if it is `b`.
    if tokens.next() == Some(b"b".as_slice()) {
        let mut buf = [0u8; DECODED_KEY_MAX];
        decode_key(req.key, &mut buf).map_err(|_| MetaError::BadFormat)?;
        req.flags.insert(b'b');
    }
    Ok(req)
}

/// Walks the flags like memcached's pre-parse: unknown or repeated flags
/// stop at once; malformed tokens are remembered (the last one's text
/// wins) and reported after the walk, so a later unknown flag still
/// overrides them. Then the per-command checks (mode, opaque) in
/// memcached's order.
fn parse_flags(req: &mut MetaRequest<'_>) -> Result<(), MetaError> {
    let walked = walk_flags(req);
    let walked = match (req.command, walked) {
        (MetaCommand::Delete | MetaCommand::Arithmetic, Err(_)) => {
            Err(MetaError::InvalidOrDuplicateFlag)
        }
        (_, other) => other,
    };
    walked?;
    match req.command {
        MetaCommand::Set if req.mode.is_some_and(|m| set_mode(m).is_none()) => {
            return Err(MetaError::InvalidSetMode);
        }
        MetaCommand::Arithmetic if req.mode.is_some_and(|m| arith_mode(m).is_none()) => {
            return Err(MetaError::InvalidArithMode);
        }
        _ => {}
    }
    if req.opaque.is_some_and(|o| o.len() + 1 > OPAQUE_TOKEN_MAX) {
        return Err(MetaError::OpaqueTooLong);
    }
    Ok(())
}

fn walk_flags(req: &mut MetaRequest<'_>) -> Result<(), MetaError> {
    let mut pending: Option<MetaError> = None;
    let mut seen = MetaFlags::default();
    let mut seen_other = [false; 128];
    for token in Tokens::new(req.flag_section) {
        let Some((&letter, value)) = token.split_first() else {
            continue;
        };
        let slot = seen_other.get_mut(usize::from(letter));
        match slot {
            Some(s) if letter < 127 && !*s => *s = true,
            _ => return Err(MetaError::DuplicateFlag),
        }
        seen.insert(letter);
        match letter {
            b'b' => {
                let mut buf = [0u8; DECODED_KEY_MAX];
                if decode_key(req.key, &mut buf).is_err() {
                    pending = Some(MetaError::KeyDecode);
                }
            }
            // memcached keeps the low 32 bits of the C long.
            b'N' | b'T' | b'R' => match strtol(value) {
                Some(v) => match letter {
                    b'N' => req.vivify_ttl = Some(v),
                    b'T' => req.ttl = Some(v),
                    _ => req.recache_ttl = Some(v),
                },
                None => pending = Some(MetaError::BadToken),
            },
            b'O' => req.opaque = Some(value),
            b'F' => match strtoull(value) {
                Some(v) => req.client_flags = Some(v as u32),
                None => {
                    pending.get_or_insert(MetaError::BadClientFlags);
                }
            },
            b'C' => match strtoull(value) {
                Some(v) => req.compare_cas = Some(v),
                None => pending = Some(MetaError::BadToken),
            },
            b'E' => match strtoull(value) {
                Some(v) => req.new_cas = Some(v),
                None => pending = Some(MetaError::BadToken),
            },
            b'M' => match value {
                [m] => req.mode = Some(*m),
                _ => pending = Some(MetaError::ModeLength),
            },
            b'J' => match strtoull(value) {
                Some(v) => req.initial = Some(v),
                None => pending = Some(MetaError::InvalidInitial),
            },
            b'D' => match strtoull(value) {
                Some(v) => req.delta = Some(v),
                None => pending = Some(MetaError::InvalidDelta),
            },
            b'P' | b'L' | b'l' | b'k' | b's' | b't' | b'c' | b'f' | b'v' | b'h' | b'u' | b'q'
            | b'I' | b'x' => {}
            _ => return Err(MetaError::InvalidFlag),
        }
    }
    req.flags = seen;
    pending.map_or(Ok(()), Err)
}

fn set_mode(m: u8) -> Option<SetMode> {
    match m {
        b'E' => Some(SetMode::Add),
        b'A' => Some(SetMode::Append),
        b'P' => Some(SetMode::Prepend),
        b'R' => Some(SetMode::Replace),
        b'S' => Some(SetMode::Set),
        _ => None,
    }
}

fn arith_mode(m: u8) -> Option<ArithMode> {
    match m {
        b'I' | b'+' => Some(ArithMode::Incr),
        b'D' | b'-' => Some(ArithMode::Decr),
        _ => None,
    }
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Value of a base64 symbol; `=` counts as 0 (padding), others are skipped.
fn base64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// Decodes a base64 key the way memcached does: bytes outside the alphabet
/// are skipped, the significant ones must come in groups of four, decoding
/// stops after the first group holding `=` (one or two of them), and an
/// empty result is an error. Fails with [`MetaError::KeyDecode`], also
/// when the result does not fit `out`.
///
/// # Errors
///
/// [`MetaError::KeyDecode`] for input memcached cannot decode.
pub fn decode_key<'o, const N: usize>(
    encoded: &[u8],
    out: &'o mut [u8; N],
) -> Result<&'o [u8], MetaError> {
    let significant = encoded
        .iter()
        .filter(|&&b| base64_value(b).is_some())
        .count();
    if significant == 0 || significant % 4 != 0 || significant / 4 * 3 > N {
        return Err(MetaError::KeyDecode);
    }
    let mut len = 0usize;
    let mut block = [0u8; 4];
    let mut filled = 0usize;
    let mut pad = 0usize;
    for &b in encoded {
        let Some(v) = base64_value(b) else {
            continue;
        };
        if b == b'=' {
            pad += 1;
        }
        if let Some(slot) = block.get_mut(filled) {
            *slot = v;
        }
        filled += 1;
        if filled == 4 {
            let bytes = [
                (block[0] << 2) | (block[1] >> 4),
                (block[1] << 4) | (block[2] >> 2),
                (block[2] << 6) | block[3],
            ];
            let keep = match pad {
                0 => 3,
                1 => 2,
                2 => 1,
                _ => return Err(MetaError::KeyDecode),
            };
            let dst = out.get_mut(len..len + keep).ok_or(MetaError::KeyDecode)?;
            dst.copy_from_slice(bytes.get(..keep).ok_or(MetaError::KeyDecode)?);
            len += keep;
            filled = 0;
            if pad > 0 {
                break;
            }
        }
    }
    if len == 0 {
        return Err(MetaError::KeyDecode);
    }
    out.get(..len).ok_or(MetaError::KeyDecode)
}

/// Appends standard padded base64 of `key`, as memcached echoes a binary
/// key.
pub fn encode_base64(key: &[u8], out: &mut Vec<u8>) {
    let sym = |v: u8| BASE64_ALPHABET[usize::from(v & 0x3f)];
    let mut chunks = key.chunks_exact(3);
    for c in chunks.by_ref() {
        out.extend_from_slice(&[
            sym(c[0] >> 2),
            sym((c[0] << 4) | (c[1] >> 4)),
            sym((c[1] << 2) | (c[2] >> 6)),
            sym(c[2]),
        ]);
    }
    match *chunks.remainder() {
        [a] => out.extend_from_slice(&[sym(a >> 2), sym(a << 4), b'=', b'=']),
        [a, b] => {
            out.extend_from_slice(&[sym(a >> 2), sym((a << 4) | (b >> 4)), sym(b << 2), b'='])
        }
        _ => {}
    }
}

/// The two-letter status words of meta replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaStatus {
    /// Success without a value.
    Hd,
    /// Miss (`mg`, `me`).
    En,
    /// Not stored.
    Ns,
    /// CAS mismatch.
    Ex,
    /// Not found.
    Nf,
    /// Reply to `mn`.
    Mn,
}

impl MetaStatus {
    /// The status word.
    pub fn as_bytes(self) -> &'static [u8; 2] {
        match self {
            MetaStatus::Hd => b"HD",
            MetaStatus::En => b"EN",
            MetaStatus::Ns => b"NS",
            MetaStatus::Ex => b"EX",
            MetaStatus::Nf => b"NF",
            MetaStatus::Mn => b"MN",
        }
    }
}

/// Appends the decimal form of `v`, with a `-` when negative.
pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Starts a reply line with a status word (`HD`, `EN`, ...).
pub fn write_status(out: &mut Vec<u8>, status: MetaStatus) {
    out.extend_from_slice(status.as_bytes());
}

/// Starts a value reply: `VA <len>`; the data block follows the line.
pub fn write_value_header(out: &mut Vec<u8>, len: u32) {
    out.extend_from_slice(b"VA ");
    push_u64(out, u64::from(len));
}

/// Appends a bare return flag: ` W`, ` X`, ` Z`.
pub fn write_flag(out: &mut Vec<u8>, letter: u8) {
    out.extend_from_slice(&[b' ', letter]);
}

/// Appends a numeric return flag, e.g. ` c123`, ` s2`, ` f0`, ` h1`.
pub fn write_flag_u64(out: &mut Vec<u8>, letter: u8, v: u64) {
    write_flag(out, letter);
    push_u64(out, v);
}

/// Appends a signed numeric return flag: ` t-1` for "no expiry", ` t30`.
pub fn write_flag_i64(out: &mut Vec<u8>, letter: u8, v: i64) {
    write_flag(out, letter);
    push_i64(out, v);
}

/// Appends the echoed opaque: ` O<value>`.
pub fn write_opaque(out: &mut Vec<u8>, opaque: &[u8]) {
    write_flag(out, b'O');
    out.extend_from_slice(opaque);
}

/// Appends the echoed key: ` k<key>`, or ` k<base64> b` for a binary key
/// (memcached re-encodes the stored bytes, so the echo is canonical base64
/// even if the client's form had skipped characters).
pub fn write_key(out: &mut Vec<u8>, key: &[u8], binary: bool) {
    write_flag(out, b'k');
    if binary {
        encode_base64(key, out);
        write_flag(out, b'b');
    } else {
        out.extend_from_slice(key);
    }
}

/// Ends a reply line.
pub fn end_line(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &[u8]) -> MetaError {
        match parse_meta(line) {
            Ok(r) => panic!("{:?} parsed as {:?}", String::from_utf8_lossy(line), r),
            Err(e) => e,
        }
    }

    fn ok(line: &[u8]) -> MetaRequest<'_> {
        match parse_meta(line) {
            Ok(r) => r,
            Err(e) => panic!("{:?} refused: {}", String::from_utf8_lossy(line), e),
        }
    }

    fn repeat(prefix: &[u8], byte: u8, n: usize, suffix: &[u8]) -> Vec<u8> {
        let mut v = prefix.to_vec();
        v.extend(std::iter::repeat_n(byte, n));
        v.extend_from_slice(suffix);
        v
    }

    #[test]
    fn commands_and_keys() {
        let cases: &[(&[u8], MetaCommand, &[u8])] = &[
            (b"mg foo", MetaCommand::Get, b"foo"),
            (b"ms foo 2", MetaCommand::Set, b"foo"),
            (b"md foo", MetaCommand::Delete, b"foo"),
            (b"ma foo", MetaCommand::Arithmetic, b"foo"),
            (b"mn", MetaCommand::Noop, b""),
            (b"mn foo bar zz", MetaCommand::Noop, b""),
            (b"me foo", MetaCommand::Debug, b"foo"),
            (b"me foo zz yy", MetaCommand::Debug, b"foo"),
            (b"  mg   foo   k  ", MetaCommand::Get, b"foo"),
            (b"mg foo\tbar k", MetaCommand::Get, b"foo\tbar"),
            (b"mg fo\ro k", MetaCommand::Get, b"fo\ro"),
            (b"mg foo\0bar zz", MetaCommand::Get, b"foo"),
        ];
        for &(line, command, key) in cases {
            let r = ok(line);
            assert_eq!((r.command, r.key), (command, key), "{:?}", line);
            assert_eq!(r.command.as_str().as_bytes(), &line.trim_ascii_start()[..2]);
        }
    }

    #[test]
    fn unknown_commands_and_missing_keys() {
        for line in [
            &b""[..],
            b"   ",
            b"mg",
            b"mg ",
            b"ms",
            b"md",
            b"ma",
            b"m foo",
            b"mx foo",
            b"mgx foo",
            b"MG foo",
            b"get foo",
            b"\0mg foo",
        ] {
            assert_eq!(err(line), MetaError::UnknownCommand, "{:?}", line);
        }
        assert_eq!(err(b"me"), MetaError::BadFormat);
        assert_eq!(err(b"ms foo"), MetaError::BadFormat);
        assert_eq!(MetaError::UnknownCommand.as_str(), "ERROR");
    }

    #[test]
    fn every_flag_is_accepted_by_every_keyed_command() {
        let all = b"b N30 T30 R30 l O1 P L k s t c f v h u q F1 C1 MS J1 D1 I";
        let ma_all = &b"b N30 T30 R30 l O1 P L k s t c f v h u q F1 C1 MI J1 D1 I"[..];
        for prefix in [&b"mg Zm9v "[..], b"ms Zm9v 1 ", b"md Zm9v ", b"ma Zm9v "] {
            // The mode must suit ma, which is the strictest about it.
            let all = if prefix[1] == b'a' { ma_all } else { &all[..] };
            // 23 flags are more than a line may carry, so split in two.
            let mut tokens = all.split(|&b| b == b' ');
            for _ in 0..2 {
                let mut line = prefix.to_vec();
                for t in tokens.by_ref().take(12) {
                    line.extend_from_slice(t);
                    line.push(b' ');
                }
                let r = ok(&line);
                for t in line[prefix.len()..].split(|&b| b == b' ') {
                    if let Some(&letter) = t.first() {
                        assert!(r.flags.has(letter), "{:?} lost {}", line, letter as char);
                    }
                }
            }
        }
    }

    #[test]
    fn new_cas_and_clear_value_flags() {
        for line in [
            &b"mg foo E5 x"[..],
            b"ms foo 1 E5 x",
            b"md foo E5 x",
            b"ma foo E5 x",
        ] {
            let r = ok(line);
            assert_eq!(r.new_cas, Some(5), "{:?}", line);
            assert!(r.flags.has(b'E') && r.flags.has(b'x'), "{:?}", line);
        }
        assert_eq!(ok(b"md foo E18446744073709551615").new_cas, Some(u64::MAX));
        assert_eq!(ok(b"md foo E0").new_cas, Some(0));
        assert_eq!(ok(b"md foo E+7").new_cas, Some(7));
        assert_eq!(ok(b"md foo x").new_cas, None);
        assert_eq!(err(b"ms foo 1 E18446744073709551616"), MetaError::BadToken);
        assert_eq!(rejected_data_len(b"ms foo 1 Ex"), Some(1));
    }

    #[test]
    fn decoded_tokens() {
        let r = ok(b"ms foo 5 T-1 N40 R5 C18446744073709551615 F4294967295 MA O12 q k c");
        assert_eq!(r.data_len, 5);
        assert_eq!(r.ttl, Some(-1));
        assert_eq!(r.vivify_ttl, Some(40));
        assert_eq!(r.recache_ttl, Some(5));
        assert_eq!(r.compare_cas, Some(u64::MAX));
        assert_eq!(r.client_flags, Some(u32::MAX));
        assert_eq!(r.set_mode(), SetMode::Append);
        assert_eq!(r.opaque, Some(&b"12"[..]));
        assert!(r.is_quiet() && r.flags.has(b'k') && r.flags.has(b'c'));
        assert!(!r.flags.has(b'v') && !r.flags.has(b'0') && !r.flags.is_empty());

        let r = ok(b"ma foo J18446744073709551615 D7 M-");
        assert_eq!(r.initial, Some(u64::MAX));
        assert_eq!(r.delta_or_default(), 7);
        assert_eq!(r.arith_mode(), ArithMode::Decr);
        let r = ok(b"ma foo");
        assert_eq!((r.delta_or_default(), r.arith_mode()), (1, ArithMode::Incr));
        assert!(r.flags.is_empty());
    }

    #[test]
    fn numbers_follow_c_semantics() {
        let ttl = |line: &[u8]| ok(line).ttl;
        assert_eq!(ttl(b"mg k T+30"), Some(30));
        assert_eq!(ttl(b"mg k T\t30"), Some(30));
        assert_eq!(ttl(b"mg k T30\tzz"), Some(30));
        assert_eq!(ttl(b"mg k T2147483647"), Some(i32::MAX));
        assert_eq!(ttl(b"mg k T2147483648"), Some(i32::MIN));
        assert_eq!(ttl(b"mg k T-9223372036854775808"), Some(0));
        assert_eq!(err(b"mg k T9223372036854775808"), MetaError::BadToken);
        assert_eq!(err(b"mg k T-9223372036854775809"), MetaError::BadToken);
        for bad in [
            &b"mg k T"[..],
            b"mg k T30x",
            b"mg k Tx",
            b"mg k T-",
            b"mg k T\t",
        ] {
            assert_eq!(err(bad), MetaError::BadToken, "{:?}", bad);
        }
        let flags = |line: &[u8]| ok(line).client_flags;
        assert_eq!(flags(b"ms k 1 F4294967296"), Some(0));
        assert_eq!(flags(b"ms k 1 F18446744073709551615"), Some(u32::MAX));
        assert_eq!(flags(b"ms k 1 F+7"), Some(7));
        assert_eq!(flags(b"ms k 1 F-0"), Some(0));
        assert_eq!(
            err(b"ms k 1 F18446744073709551616"),
            MetaError::BadClientFlags
        );
        assert_eq!(err(b"ms k 1 F-1"), MetaError::BadClientFlags);
        let cas = |line: &[u8]| ok(line).compare_cas;
        assert_eq!(cas(b"md k C0"), Some(0));
        // C wraps -9223372036854775809 to a positive value and keeps it.
        assert_eq!(cas(b"md k C-9223372036854775809"), Some(i64::MAX as u64));
        assert_eq!(err(b"mg k C18446744073709551616"), MetaError::BadToken);
        assert_eq!(err(b"mg k C-1"), MetaError::BadToken);
    }

    #[test]
    fn data_length_limits() {
        assert_eq!(ok(b"ms k 0").data_len, 0);
        assert_eq!(ok(b"ms k +2").data_len, 2);
        assert_eq!(ok(b"ms k 2147483645").data_len, DATA_LEN_MAX);
        // strtol's long is narrowed to int32 before the range check.
        assert_eq!(ok(b"ms k 4294967298").data_len, 2);
        for bad in [
            &b"ms k 2147483646"[..],
            b"ms k 2147483648",
            b"ms k -1",
            b"ms k x",
            b"ms k 2x",
            b"ms k 99999999999999999999",
        ] {
            assert_eq!(err(bad), MetaError::BadFormat, "{:?}", bad);
            assert_eq!(rejected_data_len(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn key_length_limits() {
        let k250 = repeat(b"mg ", b'a', 250, b" v");
        assert_eq!(ok(&k250).key.len(), 250);
        for cmd in [&b"mg "[..], b"md ", b"ma ", b"me "] {
            let k251 = repeat(cmd, b'a', 251, b" zz");
            assert_eq!(err(&k251), MetaError::BadFormat);
        }
        let ms251 = repeat(b"ms ", b'a', 251, b" 1 zz");
        assert_eq!(err(&ms251), MetaError::BadFormat);
        assert_eq!(rejected_data_len(&ms251), None);
    }

    #[test]
    fn opaque_limit_counts_the_letter() {
        let o31 = repeat(b"mg k O", b'a', 31, b" k");
        assert_eq!(ok(&o31).opaque.map(<[u8]>::len), Some(31));
        let o32 = repeat(b"mg k O", b'a', 32, b"");
        assert_eq!(err(&o32), MetaError::OpaqueTooLong);
        let md = repeat(b"md k O", b'a', 40, b"");
        assert_eq!(err(&md), MetaError::OpaqueTooLong);
        assert_eq!(ok(b"mg k O").opaque, Some(&b""[..]));
    }

    #[test]
    fn token_count_limit() {
        let mut line = b"mg k".to_vec();
        for _ in 0..17 {
            line.extend_from_slice(b" a");
        }
        // 19 tokens: the invalid flag is reached.
        assert_eq!(err(&line), MetaError::InvalidFlag);
        line.extend_from_slice(b" a");
        assert_eq!(err(&line), MetaError::GetTooManyFlags);
        line[1] = b'd';
        assert_eq!(err(&line), MetaError::TooManyFlags);
        let mut ms = b"ms k 1".to_vec();
        for _ in 0..17 {
            ms.extend_from_slice(b" q");
        }
        assert_eq!(err(&ms), MetaError::TooManyFlags);
        assert_eq!(rejected_data_len(&ms), None);
        ms.truncate(ms.len() - 2);
        assert_eq!(err(&ms), MetaError::DuplicateFlag);
        assert_eq!(rejected_data_len(&ms), Some(1));
    }

    #[test]
    fn flag_errors_and_precedence() {
        let cases: &[(&[u8], Option<MetaError>)] = &[
            (b"mg foo E5", None),
            (b"mg foo x", None),
            (b"mg foo Ex", Some(MetaError::BadToken)),
            (b"mg foo E", Some(MetaError::BadToken)),
            (b"mg foo E-1", Some(MetaError::BadToken)),
            (b"mg foo Ex zz", Some(MetaError::InvalidFlag)),
            (b"mg foo x x", Some(MetaError::DuplicateFlag)),
            (b"ms foo 2 E5 E6", Some(MetaError::DuplicateFlag)),
            (b"md foo Ex", Some(MetaError::InvalidOrDuplicateFlag)),
            (b"md foo x E5 I", None),
            (b"ma foo E5 x", None),
            (b"mg foo S3", Some(MetaError::InvalidFlag)),
            (b"mg foo \t", Some(MetaError::InvalidFlag)),
            (b"mg foo v v", Some(MetaError::DuplicateFlag)),
            (b"mg foo vx vy", Some(MetaError::DuplicateFlag)),
            (b"mg foo \xff", Some(MetaError::DuplicateFlag)),
            (b"mg foo \x7f", Some(MetaError::DuplicateFlag)),
            (b"mg foo Tabc zz", Some(MetaError::InvalidFlag)),
            (b"mg foo Tabc v v", Some(MetaError::DuplicateFlag)),
            (b"mg foo Dx", Some(MetaError::InvalidDelta)),
            (b"mg foo Jx", Some(MetaError::InvalidInitial)),
            (b"mg foo Dx Jx", Some(MetaError::InvalidInitial)),
            (b"mg foo Jx Dx zz", Some(MetaError::InvalidFlag)),
            (b"mg foo MXX", Some(MetaError::ModeLength)),
            (b"mg foo M", Some(MetaError::ModeLength)),
            (b"mg foo MX", None),
            (b"mg foo Fx", Some(MetaError::BadClientFlags)),
            (b"mg foo b", Some(MetaError::KeyDecode)),
            (b"mg Zm9 b k", Some(MetaError::KeyDecode)),
            (b"ms foo 2 Tx Fx", Some(MetaError::BadToken)),
            (b"ms foo 2 Fx Tx", Some(MetaError::BadToken)),
            (b"ms foo 2 Fx Cx Dx", Some(MetaError::InvalidDelta)),
            (b"ms foo 2 Dx Cx Fx", Some(MetaError::BadToken)),
            (b"ms foo 2 MX", Some(MetaError::InvalidSetMode)),
            (b"ms foo 2 Ms", Some(MetaError::InvalidSetMode)),
            (b"ms foo 2 Mx Tq", Some(MetaError::BadToken)),
            (b"ms foo 2 MEE", Some(MetaError::ModeLength)),
            (b"ms foo 2 Tx zz", Some(MetaError::InvalidFlag)),
            (b"ms foo 2 b", Some(MetaError::KeyDecode)),
            (
                b"ms foo 2 Oaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa MX",
                Some(MetaError::InvalidSetMode),
            ),
            (b"md foo zz", Some(MetaError::InvalidOrDuplicateFlag)),
            (b"md foo Tx", Some(MetaError::InvalidOrDuplicateFlag)),
            (b"md foo b", Some(MetaError::InvalidOrDuplicateFlag)),
            (b"md foo MX", None),
            (b"ma foo zz", Some(MetaError::InvalidOrDuplicateFlag)),
            (b"ma foo Dx", Some(MetaError::InvalidOrDuplicateFlag)),
            (b"ma foo Jx", Some(MetaError::InvalidOrDuplicateFlag)),
            (b"ma foo MX", Some(MetaError::InvalidArithMode)),
            (b"ma foo MXX", Some(MetaError::InvalidOrDuplicateFlag)),
            (b"me Zm9 b", Some(MetaError::BadFormat)),
        ];
        for &(line, want) in cases {
            let got = parse_meta(line).err();
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn error_texts_are_memcacheds() {
        let cases = [
            (MetaError::BadFormat, "CLIENT_ERROR bad command line format"),
            (
                MetaError::BadClientFlags,
                "CLIENT_ERROR bad command line format",
            ),
            (
                MetaError::GetTooManyFlags,
                "CLIENT_ERROR options flags are too long",
            ),
            (
                MetaError::TooManyFlags,
                "CLIENT_ERROR options flags too long",
            ),
            (MetaError::InvalidFlag, "CLIENT_ERROR invalid flag"),
            (MetaError::DuplicateFlag, "CLIENT_ERROR duplicate flag"),
            (
                MetaError::InvalidOrDuplicateFlag,
                "CLIENT_ERROR invalid or duplicate flag",
            ),
            (
                MetaError::BadToken,
                "CLIENT_ERROR bad token in command line format",
            ),
            (
                MetaError::OpaqueTooLong,
                "CLIENT_ERROR opaque token too long",
            ),
            (
                MetaError::ModeLength,
                "CLIENT_ERROR incorrect length for M token",
            ),
            (
                MetaError::InvalidSetMode,
                "CLIENT_ERROR invalid mode for ms M token",
            ),
            (
                MetaError::InvalidArithMode,
                "CLIENT_ERROR invalid mode for ma M token",
            ),
            (
                MetaError::InvalidDelta,
                "CLIENT_ERROR invalid numeric delta value",
            ),
            (
                MetaError::InvalidInitial,
                "CLIENT_ERROR invalid numeric initial value",
            ),
            (MetaError::KeyDecode, "CLIENT_ERROR error decoding key"),
        ];
        for (e, text) in cases {
            assert_eq!(e.as_str(), text);
            assert_eq!(e.to_string(), text);
        }
    }

    #[test]
    fn bad_ms_swallows_its_data_block_after_the_length_is_known() {
        assert_eq!(rejected_data_len(b"ms foo 2 zz"), Some(2));
        assert_eq!(
            rejected_data_len(b"ms foo 7 Oaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            Some(7)
        );
        assert_eq!(rejected_data_len(b"ms foo 2 MX"), Some(2));
        assert_eq!(rejected_data_len(b"ms foo 2 b"), Some(2));
        assert_eq!(rejected_data_len(b"ms foo x"), None);
        assert_eq!(rejected_data_len(b"ms foo"), None);
        assert_eq!(rejected_data_len(b"ms foo 2 v"), None);
        assert_eq!(rejected_data_len(b"mg foo zz"), None);
    }

    #[test]
    fn modes() {
        let cases: &[(&[u8], SetMode)] = &[
            (b"ms k 1", SetMode::Set),
            (b"ms k 1 MS", SetMode::Set),
            (b"ms k 1 ME", SetMode::Add),
            (b"ms k 1 MA", SetMode::Append),
            (b"ms k 1 MP", SetMode::Prepend),
            (b"ms k 1 MR", SetMode::Replace),
        ];
        for &(line, mode) in cases {
            assert_eq!(ok(line).set_mode(), mode);
        }
        for (line, mode) in [
            (&b"ma k MI"[..], ArithMode::Incr),
            (b"ma k M+", ArithMode::Incr),
            (b"ma k MD", ArithMode::Decr),
            (b"ma k M-", ArithMode::Decr),
        ] {
            assert_eq!(ok(line).arith_mode(), mode);
        }
        assert_eq!(ok(b"mg k MX").mode, Some(b'X'));
    }

    #[test]
    fn flag_tokens_keep_request_order() {
        let r = ok(b"mg foo O5 l h s  t f c k v");
        let letters: Vec<u8> = r.flag_tokens().map(|(l, _)| l).collect();
        assert_eq!(letters, b"Olhstfckv");
        let (_, tok) = r.flag_tokens().next().unwrap_or((0, &[]));
        assert_eq!(tok, b"O5");
        let r = ok(b"ms foo 2 c k");
        let letters: Vec<u8> = r.flag_tokens().map(|(l, _)| l).collect();
        assert_eq!(letters, b"ck");
        assert_eq!(ok(b"mn x y").flag_tokens().count(), 0);
    }

    #[test]
    fn base64_keys() {
        let mut buf = [0u8; DECODED_KEY_MAX];
        let cases: &[(&[u8], &[u8])] = &[
            (b"Zm9v", b"foo"),
            (b"Zm9v!", b"foo"),
            (b"Zg==", b"f"),
            (b"Zm8=", b"fo"),
            (b"Zg==Zm9v", b"f"),
            (b"Z=9v", b"\x64\x0f"),
            (b"Zm9vZg=x", b"foof\x00"),
        ];
        for &(enc, dec) in cases {
            assert_eq!(decode_key(enc, &mut buf), Ok(dec), "{:?}", enc);
        }
        for bad in [&b""[..], b"Zm9", b"====", b"A===", b"!!!!", b"Zm9vZ"] {
            assert_eq!(
                decode_key(bad, &mut buf),
                Err(MetaError::KeyDecode),
                "{:?}",
                bad
            );
        }
        let mut small = [0u8; 2];
        assert_eq!(decode_key(b"Zm9v", &mut small), Err(MetaError::KeyDecode));

        let r = ok(b"mg Zm9v b k");
        assert!(r.is_base64());
        assert_eq!(r.key, b"Zm9v");
        assert_eq!(r.key_bytes(&mut buf), b"foo");
        let r = ok(b"mg Zm9v k");
        assert_eq!(r.key_bytes(&mut buf), b"Zm9v");
        assert!(ok(b"me Zm9v b").is_base64());
        assert!(!ok(b"me Zm9v bb").is_base64());
    }

    #[test]
    fn base64_limits_and_round_trips() {
        let longest = repeat(b"ms ", b'A', 248, b" 1 b");
        let r = ok(&longest);
        let mut buf = [0u8; DECODED_KEY_MAX];
        assert_eq!(r.key_bytes(&mut buf).len(), DECODED_KEY_MAX);
        let over = repeat(b"mg ", b'A', 252, b" b");
        assert_eq!(err(&over), MetaError::BadFormat);

        for len in 0..=DECODED_KEY_MAX {
            let key: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let mut enc = Vec::new();
            encode_base64(&key, &mut enc);
            assert_eq!(enc.len(), len.div_ceil(3) * 4);
            if len == 0 {
                assert_eq!(decode_key(&enc, &mut buf), Err(MetaError::KeyDecode));
            } else {
                assert_eq!(decode_key(&enc, &mut buf), Ok(&key[..]), "len {}", len);
            }
        }
        let mut enc = Vec::new();
        encode_base64(b"foo", &mut enc);
        encode_base64(b"f", &mut enc);
        encode_base64(b"fo", &mut enc);
        assert_eq!(enc, b"Zm9vZg==Zm8=");
    }

    #[test]
    fn integer_formatting() {
        let mut out = Vec::new();
        for v in [0u64, 7, 10, 12345, u64::MAX] {
            out.clear();
            push_u64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
        for v in [0i64, -1, 30, i64::MIN, i64::MAX] {
            out.clear();
            push_i64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
    }

    #[test]
    fn reply_encoders_match_memcached_lines() {
        // mg hit with flags in request order, then Z X W as memcached adds them.
        let mut out = Vec::new();
        write_value_header(&mut out, 3);
        write_flag_u64(&mut out, b'c', 19);
        write_flag_i64(&mut out, b't', 29);
        write_flag(&mut out, b'Z');
        write_flag(&mut out, b'X');
        end_line(&mut out);
        assert_eq!(out, b"VA 3 c19 t29 Z X\r\n");

        out.clear();
        write_status(&mut out, MetaStatus::En);
        write_key(&mut out, b"foo", true);
        write_opaque(&mut out, b"99");
        end_line(&mut out);
        assert_eq!(out, b"EN kZm9v b O99\r\n");

        out.clear();
        write_status(&mut out, MetaStatus::Hd);
        write_flag_u64(&mut out, b'c', 10);
        write_key(&mut out, b"foo", false);
        write_opaque(&mut out, b"1");
        write_flag_i64(&mut out, b't', -1);
        end_line(&mut out);
        assert_eq!(out, b"HD c10 kfoo O1 t-1\r\n");

        let words: Vec<&[u8]> = [
            MetaStatus::Hd,
            MetaStatus::En,
            MetaStatus::Ns,
            MetaStatus::Ex,
            MetaStatus::Nf,
            MetaStatus::Mn,
        ]
        .iter()
        .map(|s| &s.as_bytes()[..])
        .collect();
        assert_eq!(words.concat(), b"HDENNSEXNFMN");
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let alphabet = b"mgsdanebqkvO T0123456789-+=\t\r\xff\0ZmZ9vICFMJDNRE";
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let line: Vec<u8> = (0..len)
                .map(|i| alphabet[((state >> (i % 50)) as usize + i * 7) % alphabet.len()])
                .collect();
            if let Ok(r) = parse_meta(&line) {
                assert!(r.key.len() <= KEY_MAX);
                assert!(!r.key.contains(&b' ') && !r.key.contains(&0));
                assert!(r.opaque.map_or(0, <[u8]>::len) < OPAQUE_TOKEN_MAX);
            }
        }
    }
}
