//! memcached's binary protocol: an incremental, zero-copy request parser and
//! the response encoders.
//!
//! Why it looks like this:
//!
//! - Clients pipeline packets and TCP splits them anywhere, so the parser is
//!   a pure function of "the bytes received so far": it either needs more
//!   ([`Parsed::Incomplete`], with the total length to wait for), finds one
//!   whole packet ([`Parsed::Complete`], with the bytes it used), or finds a
//!   fault ([`BinError`]). It keeps no state between calls, never allocates,
//!   and borrows key, extras and value straight from the read buffer, so a
//!   SET's value can go to item memory in one copy.
//! - memcached is the reference, faults included. Every check it makes after
//!   reading a header is reproduced in its order (except its SASL check,
//!   which needs connection state: see [`BinError::checked_before_auth`]),
//!   and each fault carries the
//!   [`ErrorAction`] memcached takes: close silently (bad magic), reply then
//!   close (impossible lengths, wrong shape for the opcode), or reply and skip
//!   the rest of the packet (unknown opcode, value above the item size limit).
//!   As in memcached, only the magic is judged from the header alone; every
//!   other check waits until extras and key have arrived too, so a request
//!   that arrives in pieces is answered when memcached answers it, and the
//!   connection has read the same bytes when it closes. memcached reads
//!   them into its 16 KiB read buffer ([`READ_BUFFER`]), and a request
//!   whose extras and key cannot fit there ends the connection without a
//!   reply once the buffer is full ([`BinError::HeadOverflow`]); so the
//!   most a caller buffers for a request it refuses is 16 KiB, never a
//!   hostile body length.
//! - Three places where memcached's own framing goes wrong are deliberately
//!   not copied (the reply bytes stay the same; only what happens to later
//!   bytes differs), because copying them would let a value be read as
//!   commands:
//!   1. For an unknown opcode memcached skips `bodylen` bytes *after* the key
//!      and extras it already consumed, eating the start of the next packet.
//!      Here exactly one packet (`24 + bodylen`) is skipped.
//!   2. TOUCH, GAT* and STAT ignore any bytes past key and extras, which
//!      memcached then parses as the next packet. Here such a value is a
//!      shape error (`Invalid arguments`, then close), like GET's.
//!   3. A value length above `i32::MAX` overflows memcached's swallow counter
//!      (it then parses the value as commands, or stalls). Here the reply is
//!      the same and the connection is closed.
//! - The encoders write only the header (and extras and key): the caller
//!   appends the value itself, straight from item memory.

use std::fmt;

/// Length of every request and response header.
pub const HEADER_LEN: usize = 24;
/// First byte of every request.
pub const REQUEST_MAGIC: u8 = 0x80;
/// First byte of every response.
pub const RESPONSE_MAGIC: u8 = 0x81;
/// Longest key memcached stores (the wire allows 65535).
pub const KEY_MAX_LEN: usize = 250;
/// Longest body a connection may be asked to swallow: memcached keeps the
/// count in a C `int`, and beyond it behaves as described in the module docs.
pub const SWALLOW_MAX: u32 = i32::MAX as u32;
/// memcached's read buffer for a connection (`READ_BUFFER_SIZE`). It never
/// grows for the binary protocol, so a request's header, extras and key
/// must fit in it.
pub const READ_BUFFER: usize = 16 * 1024;

/// Every opcode memcached 1.6 answers (0x1b, 0x1f, 0x25.. answer
/// `Unknown command`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    Get = 0x00,
    Set = 0x01,
    Add = 0x02,
    Replace = 0x03,
    Delete = 0x04,
    Incr = 0x05,
    Decr = 0x06,
    Quit = 0x07,
    Flush = 0x08,
    GetQ = 0x09,
    Noop = 0x0a,
    Version = 0x0b,
    GetK = 0x0c,
    GetKQ = 0x0d,
    Append = 0x0e,
    Prepend = 0x0f,
    Stat = 0x10,
    SetQ = 0x11,
    AddQ = 0x12,
    ReplaceQ = 0x13,
    DeleteQ = 0x14,
    IncrQ = 0x15,
    DecrQ = 0x16,
    QuitQ = 0x17,
    FlushQ = 0x18,
    AppendQ = 0x19,
    PrependQ = 0x1a,
    Touch = 0x1c,
    Gat = 0x1d,
    GatQ = 0x1e,
    SaslListMechs = 0x20,
    SaslAuth = 0x21,
    SaslStep = 0x22,
    GatK = 0x23,
    GatKQ = 0x24,
}

impl Opcode {
    /// Every opcode, in wire order (for tables and tests).
    pub const ALL: [Opcode; 35] = [
        Opcode::Get,
        Opcode::Set,
        Opcode::Add,
        Opcode::Replace,
        Opcode::Delete,
        Opcode::Incr,
        Opcode::Decr,
        Opcode::Quit,
        Opcode::Flush,
        Opcode::GetQ,
        Opcode::Noop,
        Opcode::Version,
        Opcode::GetK,
        Opcode::GetKQ,
        Opcode::Append,
        Opcode::Prepend,
        Opcode::Stat,
        Opcode::SetQ,
        Opcode::AddQ,
        Opcode::ReplaceQ,
        Opcode::DeleteQ,
        Opcode::IncrQ,
        Opcode::DecrQ,
        Opcode::QuitQ,
        Opcode::FlushQ,
        Opcode::AppendQ,
        Opcode::PrependQ,
        Opcode::Touch,
        Opcode::Gat,
        Opcode::GatQ,
        Opcode::SaslListMechs,
        Opcode::SaslAuth,
        Opcode::SaslStep,
        Opcode::GatK,
        Opcode::GatKQ,
    ];

    /// The opcode for a wire byte, if memcached knows it.
    pub const fn from_u8(byte: u8) -> Option<Opcode> {
        Some(match byte {
            0x00 => Opcode::Get,
            0x01 => Opcode::Set,
            0x02 => Opcode::Add,
            0x03 => Opcode::Replace,
            0x04 => Opcode::Delete,
            0x05 => Opcode::Incr,
            0x06 => Opcode::Decr,
            0x07 => Opcode::Quit,
            0x08 => Opcode::Flush,
            0x09 => Opcode::GetQ,
            0x0a => Opcode::Noop,
            0x0b => Opcode::Version,
            0x0c => Opcode::GetK,
            0x0d => Opcode::GetKQ,
            0x0e => Opcode::Append,
            0x0f => Opcode::Prepend,
            0x10 => Opcode::Stat,
            0x11 => Opcode::SetQ,
            0x12 => Opcode::AddQ,
            0x13 => Opcode::ReplaceQ,
            0x14 => Opcode::DeleteQ,
            0x15 => Opcode::IncrQ,
            0x16 => Opcode::DecrQ,
            0x17 => Opcode::QuitQ,
            0x18 => Opcode::FlushQ,
            0x19 => Opcode::AppendQ,
            0x1a => Opcode::PrependQ,
            0x1c => Opcode::Touch,
            0x1d => Opcode::Gat,
            0x1e => Opcode::GatQ,
            0x20 => Opcode::SaslListMechs,
            0x21 => Opcode::SaslAuth,
            0x22 => Opcode::SaslStep,
            0x23 => Opcode::GatK,
            0x24 => Opcode::GatKQ,
            _ => return None,
        })
    }

    /// The wire byte.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Quiet opcodes send no reply on the common outcome: quiet gets hide
    /// misses, quiet writes hide success, QUITQ closes without a reply.
    /// Errors are still sent.
    pub const fn is_quiet(self) -> bool {
        self.loud() as u8 != self as u8
    }

    /// The non-quiet equivalent (itself for a non-quiet opcode). memcached
    /// executes the loud form; replies still carry the request's opcode.
    pub const fn loud(self) -> Opcode {
        match self {
            Opcode::GetQ => Opcode::Get,
            Opcode::GetKQ => Opcode::GetK,
            Opcode::SetQ => Opcode::Set,
            Opcode::AddQ => Opcode::Add,
            Opcode::ReplaceQ => Opcode::Replace,
            Opcode::DeleteQ => Opcode::Delete,
            Opcode::IncrQ => Opcode::Incr,
            Opcode::DecrQ => Opcode::Decr,
            Opcode::QuitQ => Opcode::Quit,
            Opcode::FlushQ => Opcode::Flush,
            Opcode::AppendQ => Opcode::Append,
            Opcode::PrependQ => Opcode::Prepend,
            Opcode::GatQ => Opcode::Gat,
            Opcode::GatKQ => Opcode::GatK,
            other => other,
        }
    }

    /// What a valid request with this opcode looks like (memcached's
    /// `dispatch_bin_command`, plus the divergence 2 of the module docs).
    const fn shape(self) -> Shape {
        use Presence::{Allowed, Forbidden, Required};
        let (extras, key, value) = match self.loud() {
            Opcode::Get | Opcode::GetK | Opcode::Delete => {
                (ExtrasRule::Exactly(0), Required, Forbidden)
            }
            Opcode::Set | Opcode::Add | Opcode::Replace => {
                (ExtrasRule::Exactly(8), Required, Allowed)
            }
            Opcode::Incr | Opcode::Decr => (ExtrasRule::Exactly(20), Required, Forbidden),
            Opcode::Flush => (ExtrasRule::NoneOrExptime, Forbidden, Forbidden),
            Opcode::Append | Opcode::Prepend | Opcode::SaslAuth | Opcode::SaslStep => {
                (ExtrasRule::Exactly(0), Required, Allowed)
            }
            Opcode::Stat => (ExtrasRule::Exactly(0), Allowed, Forbidden),
            Opcode::Touch | Opcode::Gat | Opcode::GatK => {
                (ExtrasRule::Exactly(4), Required, Forbidden)
            }
            // Quit, Noop, Version, SaslListMechs: header only.
            _ => (ExtrasRule::Exactly(0), Forbidden, Forbidden),
        };
        Shape { extras, key, value }
    }
}

impl From<Opcode> for u8 {
    fn from(op: Opcode) -> u8 {
        op.as_u8()
    }
}

/// Response status, with the error text memcached sends in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Status {
    Success = 0x00,
    KeyNotFound = 0x01,
    KeyExists = 0x02,
    TooLarge = 0x03,
    InvalidArguments = 0x04,
    NotStored = 0x05,
    NonNumeric = 0x06,
    AuthError = 0x20,
    AuthContinue = 0x21,
    UnknownCommand = 0x81,
    OutOfMemory = 0x82,
}

impl Status {
    /// Every status memcached sends.
    pub const ALL: [Status; 11] = [
        Status::Success,
        Status::KeyNotFound,
        Status::KeyExists,
        Status::TooLarge,
        Status::InvalidArguments,
        Status::NotStored,
        Status::NonNumeric,
        Status::AuthError,
        Status::AuthContinue,
        Status::UnknownCommand,
        Status::OutOfMemory,
    ];

    /// The wire value.
    pub const fn as_u16(self) -> u16 {
        self as u16
    }

    /// The status for a wire value, if memcached uses it.
    pub const fn from_u16(v: u16) -> Option<Status> {
        Some(match v {
            0x00 => Status::Success,
            0x01 => Status::KeyNotFound,
            0x02 => Status::KeyExists,
            0x03 => Status::TooLarge,
            0x04 => Status::InvalidArguments,
            0x05 => Status::NotStored,
            0x06 => Status::NonNumeric,
            0x20 => Status::AuthError,
            0x21 => Status::AuthContinue,
            0x81 => Status::UnknownCommand,
            0x82 => Status::OutOfMemory,
            _ => return None,
        })
    }

    /// The body memcached sends with this status when it has no more
    /// specific text. Success and AuthContinue are not errors: `None`.
    /// (Out-of-memory replies usually carry a specific text such as
    /// `Out of memory allocating item`: use [`write_error_text`].)
    pub const fn error_text(self) -> Option<&'static str> {
        match self {
            Status::Success | Status::AuthContinue => None,
            Status::KeyNotFound => Some("Not found"),
            Status::KeyExists => Some("Data exists for key."),
            Status::TooLarge => Some("Too large."),
            Status::InvalidArguments => Some("Invalid arguments"),
            Status::NotStored => Some("Not stored."),
            Status::NonNumeric => Some("Non-numeric server-side value for incr or decr"),
            Status::AuthError => Some("Auth failure."),
            Status::UnknownCommand => Some("Unknown command"),
            Status::OutOfMemory => Some("Out of memory"),
        }
    }
}

/// A decoded 24-byte header (request or response; all fields big-endian on
/// the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Header {
    pub magic: u8,
    pub opcode: u8,
    pub key_len: u16,
    pub extras_len: u8,
    pub datatype: u8,
    /// vbucket id in a request, status in a response.
    pub vbucket_or_status: u16,
    /// extras + key + value.
    pub body_len: u32,
    /// Echoed back untouched.
    pub opaque: u32,
    pub cas: u64,
}

impl Header {
    /// Decodes a header; no validation.
    pub const fn decode(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            magic: b[0],
            opcode: b[1],
            key_len: u16::from_be_bytes([b[2], b[3]]),
            extras_len: b[4],
            datatype: b[5],
            vbucket_or_status: u16::from_be_bytes([b[6], b[7]]),
            body_len: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            opaque: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
            cas: u64::from_be_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]),
        }
    }

    /// Encodes a header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.magic;
        b[1] = self.opcode;
        b[2..4].copy_from_slice(&self.key_len.to_be_bytes());
        b[4] = self.extras_len;
        b[5] = self.datatype;
        b[6..8].copy_from_slice(&self.vbucket_or_status.to_be_bytes());
        b[8..12].copy_from_slice(&self.body_len.to_be_bytes());
        b[12..16].copy_from_slice(&self.opaque.to_be_bytes());
        b[16..24].copy_from_slice(&self.cas.to_be_bytes());
        b
    }
}

/// The extras of a request, decoded for its opcode. Expiration times are
/// the raw unsigned 32-bit wire value: memcached never reads a binary
/// exptime as negative (unlike the text protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extras {
    /// The opcode takes no extras.
    None,
    /// SET, ADD, REPLACE (and quiet forms).
    Store { flags: u32, exptime: u32 },
    /// INCR, DECR (and quiet forms). On a miss, `exptime == 0xffffffff`
    /// means "do not create".
    Arith {
        delta: u64,
        initial: u64,
        exptime: u32,
    },
    /// TOUCH, GAT, GATQ, GATK, GATKQ.
    Touch { exptime: u32 },
    /// FLUSH, FLUSHQ: the exptime is optional (no extras = now).
    Flush { exptime: Option<u32> },
}

/// One complete, validated request, borrowing from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// As sent (quiet or not): replies must echo it.
    pub opcode: Opcode,
    pub opaque: u32,
    /// Compare-and-swap value; 0 = none.
    pub cas: u64,
    /// Ignored by memcached.
    pub vbucket: u16,
    /// Ignored by memcached.
    pub datatype: u8,
    /// Raw extras, already decoded in `args`.
    pub extras: &'a [u8],
    /// At most [`KEY_MAX_LEN`] bytes; any byte values.
    pub key: &'a [u8],
    /// Empty unless the opcode carries data (storage, APPEND/PREPEND, SASL).
    pub value: &'a [u8],
    /// The extras decoded for the opcode.
    pub args: Extras,
}

/// Outcome of [`parse_request`] on a buffer without faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a whole packet yet: call again once the buffer holds at least
    /// `need` bytes in total (always more than it holds now).
    Incomplete { need: usize },
    /// One packet; the next one starts at `consumed`.
    Complete { req: Request<'a>, consumed: usize },
}

/// What the connection must do about a [`BinError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorAction {
    /// Close without a reply.
    Close,
    /// Send an error packet with this status, then close.
    ReplyAndClose(Status),
    /// Send an error packet with this status, drop `skip` bytes counted
    /// from the start of this packet (header included; possibly more than
    /// has arrived yet), and go on parsing after them.
    ReplyAndSkip { status: Status, skip: usize },
}

/// A request memcached would refuse, with the reason and what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinError<'a> {
    /// The first byte is not 0x80. memcached closes without a reply.
    BadMagic { magic: u8 },
    /// Header, extras and key come to more than [`READ_BUFFER`], and that
    /// much has arrived. memcached's read buffer is then full before it can
    /// judge the request; its next read asks for zero bytes, it takes the
    /// zero for end of input and closes without a reply. Not for a
    /// datagram ([`parse_datagram_request`]): memcached's UDP buffer holds
    /// any datagram.
    HeadOverflow { key_len: u16, extras_len: u8 },
    /// keylen + extlen > bodylen: the lengths contradict each other (the
    /// CVE-2016-8704/8705/8706 underflow). memcached replies
    /// `Unknown command` and closes.
    BodyTooShort {
        opcode: u8,
        opaque: u32,
        key_len: u16,
        extras_len: u8,
        body_len: u32,
    },
    /// A key longer than 250 bytes: `Invalid arguments`, close. Checked
    /// before the opcode, so it applies to unknown opcodes too.
    KeyTooLong {
        opcode: u8,
        opaque: u32,
        key_len: u16,
    },
    /// An opcode memcached does not know: `Unknown command`, skip the
    /// packet, keep the connection.
    UnknownOpcode {
        opcode: u8,
        opaque: u32,
        body_len: u32,
    },
    /// The extras length is wrong for the opcode: `Invalid arguments`, close.
    BadExtrasLen {
        opcode: Opcode,
        opaque: u32,
        extras_len: u8,
    },
    /// The opcode needs a key and has none: `Invalid arguments`, close.
    MissingKey { opcode: Opcode, opaque: u32 },
    /// The opcode takes no key and has one: `Invalid arguments`, close.
    UnexpectedKey {
        opcode: Opcode,
        opaque: u32,
        key_len: u16,
    },
    /// The opcode takes no value and has one: `Invalid arguments`, close.
    UnexpectedValue {
        opcode: Opcode,
        opaque: u32,
        value_len: u32,
    },
    /// The value is above the item size limit. memcached replies
    /// `Too large.` (`Out of memory` for SASL data), skips the value and
    /// keeps the connection; a failed SET/SETQ also deletes `key`'s old
    /// value (the caller's job). Above [`SWALLOW_MAX`]: reply, then close.
    ValueTooLarge {
        opcode: Opcode,
        opaque: u32,
        key: &'a [u8],
        value_len: u32,
        body_len: u32,
    },
}

impl BinError<'_> {
    /// What memcached does about this fault.
    pub fn action(&self) -> ErrorAction {
        match *self {
            BinError::BadMagic { .. } | BinError::HeadOverflow { .. } => ErrorAction::Close,
            BinError::BodyTooShort { .. } => ErrorAction::ReplyAndClose(Status::UnknownCommand),
            BinError::KeyTooLong { .. }
            | BinError::BadExtrasLen { .. }
            | BinError::MissingKey { .. }
            | BinError::UnexpectedKey { .. }
            | BinError::UnexpectedValue { .. } => {
                ErrorAction::ReplyAndClose(Status::InvalidArguments)
            }
            BinError::UnknownOpcode { body_len, .. } => {
                reply_and_skip(Status::UnknownCommand, body_len, body_len)
            }
            BinError::ValueTooLarge {
                opcode,
                value_len,
                body_len,
                ..
            } => {
                let status = match opcode {
                    Opcode::SaslAuth | Opcode::SaslStep => Status::OutOfMemory,
                    _ => Status::TooLarge,
                };
                reply_and_skip(status, value_len, body_len)
            }
        }
    }

    /// Whether memcached reports this fault before its SASL check. With
    /// `-S`, an unauthenticated connection that sends any other fault gets
    /// `Auth failure.` and is closed instead, unless the opcode is one that
    /// needs no authentication (SASL_LIST_MECHS, SASL_AUTH, SASL_STEP,
    /// VERSION); that choice needs connection state, so it is the caller's.
    pub fn checked_before_auth(&self) -> bool {
        matches!(
            self,
            BinError::BadMagic { .. }
                | BinError::HeadOverflow { .. }
                | BinError::BodyTooShort { .. }
        )
    }

    /// The opcode byte a reply must carry (`None` for the faults that get
    /// no reply).
    pub fn opcode_byte(&self) -> Option<u8> {
        match *self {
            BinError::BadMagic { .. } | BinError::HeadOverflow { .. } => None,
            BinError::BodyTooShort { opcode, .. }
            | BinError::KeyTooLong { opcode, .. }
            | BinError::UnknownOpcode { opcode, .. } => Some(opcode),
            BinError::BadExtrasLen { opcode, .. }
            | BinError::MissingKey { opcode, .. }
            | BinError::UnexpectedKey { opcode, .. }
            | BinError::UnexpectedValue { opcode, .. }
            | BinError::ValueTooLarge { opcode, .. } => Some(opcode.as_u8()),
        }
    }

    /// The opaque a reply must echo (0 for the faults that get no reply).
    pub fn opaque(&self) -> u32 {
        match *self {
            BinError::BadMagic { .. } | BinError::HeadOverflow { .. } => 0,
            BinError::BodyTooShort { opaque, .. }
            | BinError::KeyTooLong { opaque, .. }
            | BinError::UnknownOpcode { opaque, .. }
            | BinError::BadExtrasLen { opaque, .. }
            | BinError::MissingKey { opaque, .. }
            | BinError::UnexpectedKey { opaque, .. }
            | BinError::UnexpectedValue { opaque, .. }
            | BinError::ValueTooLarge { opaque, .. } => opaque,
        }
    }

    /// Appends the error packet memcached sends for this fault (nothing
    /// for [`ErrorAction::Close`]). Returns whether it wrote one.
    pub fn write_reply(&self, out: &mut Vec<u8>) -> bool {
        let status = match self.action() {
            ErrorAction::Close => return false,
            ErrorAction::ReplyAndClose(status) | ErrorAction::ReplyAndSkip { status, .. } => status,
        };
        match self.opcode_byte() {
            Some(opcode) => {
                write_error(out, opcode, status, self.opaque());
                true
            }
            None => false,
        }
    }
}

/// Skip one whole packet if memcached's `int` swallow count can hold
/// `swallow`, else reply and close (module docs, divergence 3).
fn reply_and_skip(status: Status, swallow: u32, body_len: u32) -> ErrorAction {
    let skip = usize::try_from(body_len)
        .ok()
        .and_then(|b| b.checked_add(HEADER_LEN));
    match skip {
        Some(skip) if swallow <= SWALLOW_MAX => ErrorAction::ReplyAndSkip { status, skip },
        _ => ErrorAction::ReplyAndClose(status),
    }
}

impl fmt::Display for BinError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BinError::BadMagic { magic } => {
                write!(f, "request magic is {magic:#04x}, not 0x80")
            }
            BinError::HeadOverflow {
                key_len,
                extras_len,
            } => write!(
                f,
                "header, extras ({extras_len}) and key ({key_len}) exceed the {READ_BUFFER}-byte read buffer"
            ),
            BinError::BodyTooShort {
                opcode,
                key_len,
                extras_len,
                body_len,
                ..
            } => write!(
                f,
                "opcode {opcode:#04x}: key ({key_len}) + extras ({extras_len}) exceed the body ({body_len})"
            ),
            BinError::KeyTooLong {
                opcode, key_len, ..
            } => write!(
                f,
                "opcode {opcode:#04x}: key of {key_len} bytes exceeds {KEY_MAX_LEN}"
            ),
            BinError::UnknownOpcode { opcode, .. } => write!(f, "unknown opcode {opcode:#04x}"),
            BinError::BadExtrasLen {
                opcode, extras_len, ..
            } => write!(f, "{opcode:?}: {extras_len} bytes of extras is not valid"),
            BinError::MissingKey { opcode, .. } => write!(f, "{opcode:?}: a key is required"),
            BinError::UnexpectedKey {
                opcode, key_len, ..
            } => write!(f, "{opcode:?}: takes no key, got {key_len} bytes"),
            BinError::UnexpectedValue {
                opcode, value_len, ..
            } => write!(f, "{opcode:?}: takes no value, got {value_len} bytes"),
            BinError::ValueTooLarge {
                opcode, value_len, ..
            } => write!(
                f,
                "{opcode:?}: value of {value_len} bytes exceeds the item size limit"
            ),
        }
    }
}

impl std::error::Error for BinError<'_> {}

#[derive(Clone, Copy)]
enum ExtrasRule {
    Exactly(u8),
    /// FLUSH: 0 or 4 bytes.
    NoneOrExptime,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Presence {
    Required,
    Forbidden,
    Allowed,
}

#[derive(Clone, Copy)]
struct Shape {
    extras: ExtrasRule,
    key: Presence,
    /// `Allowed` values are data, bounded by the item size limit.
    value: Presence,
}

/// Parses the first request in `buf`.
///
/// `item_size_max` bounds the value of data-carrying opcodes (memcached's
/// `-I`); the store still applies its exact per-item limit, which also
/// counts the key and item overhead.
///
/// Checks, in memcached's order: magic; header, extras and key within
/// [`READ_BUFFER`]; keylen + extlen <= bodylen; key at most 250 bytes;
/// known opcode; extras, key and value as the opcode requires; value
/// within the limit. A bad magic is reported once the header has arrived,
/// [`BinError::HeadOverflow`] once [`READ_BUFFER`] bytes have, and every
/// other fault once header, extras and key have.
pub fn parse_request(buf: &[u8], item_size_max: usize) -> Result<Parsed<'_>, BinError<'_>> {
    parse(buf, item_size_max, READ_BUFFER)
}

/// [`parse_request`] for the requests of one UDP datagram, which memcached
/// reads whole (its UDP read buffer is 64 KiB): no head is too long for
/// it, so there is no [`BinError::HeadOverflow`].
pub fn parse_datagram_request(
    buf: &[u8],
    item_size_max: usize,
) -> Result<Parsed<'_>, BinError<'_>> {
    parse(buf, item_size_max, usize::MAX)
}

/// The parser; `read_buffer` is how much of a request's head memcached can
/// hold.
fn parse(buf: &[u8], item_size_max: usize, read_buffer: usize) -> Result<Parsed<'_>, BinError<'_>> {
    // Like memcached, wait for a whole header before judging even the
    // magic: a client that sent a few bytes of text to a binary-only
    // listener is left waiting, not closed on.
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(Parsed::Incomplete { need: HEADER_LEN });
    };
    if head[0] != REQUEST_MAGIC {
        return Err(BinError::BadMagic { magic: head[0] });
    }
    let h = Header::decode(head);
    let key_len = usize::from(h.key_len);
    let extras_len = usize::from(h.extras_len);
    // Key end is at most 24 + 255 + 65535: no overflow.
    let key_start = HEADER_LEN + extras_len;
    let key_end = key_start + key_len;
    if key_end > read_buffer && buf.len() >= read_buffer {
        return Err(BinError::HeadOverflow {
            key_len: h.key_len,
            extras_len: h.extras_len,
        });
    }
    if buf.len() < key_end {
        return Ok(Parsed::Incomplete {
            need: key_end.min(read_buffer),
        });
    }

    let Some(value_len) = h
        .body_len
        .checked_sub(u32::from(h.key_len) + u32::from(h.extras_len))
    else {
        return Err(body_too_short(&h));
    };
    if key_len > KEY_MAX_LEN {
        return Err(BinError::KeyTooLong {
            opcode: h.opcode,
            opaque: h.opaque,
            key_len: h.key_len,
        });
    }
    let Some(opcode) = Opcode::from_u8(h.opcode) else {
        return Err(BinError::UnknownOpcode {
            opcode: h.opcode,
            opaque: h.opaque,
            body_len: h.body_len,
        });
    };

    let shape = opcode.shape();
    let extras_ok = match shape.extras {
        ExtrasRule::Exactly(n) => h.extras_len == n,
        ExtrasRule::NoneOrExptime => h.extras_len == 0 || h.extras_len == 4,
    };
    if !extras_ok {
        return Err(BinError::BadExtrasLen {
            opcode,
            opaque: h.opaque,
            extras_len: h.extras_len,
        });
    }
    match shape.key {
        Presence::Required if key_len == 0 => {
            return Err(BinError::MissingKey {
                opcode,
                opaque: h.opaque,
            })
        }
        Presence::Forbidden if key_len != 0 => {
            return Err(BinError::UnexpectedKey {
                opcode,
                opaque: h.opaque,
                key_len: h.key_len,
            })
        }
        _ => {}
    }
    if shape.value == Presence::Forbidden && value_len != 0 {
        return Err(BinError::UnexpectedValue {
            opcode,
            opaque: h.opaque,
            value_len,
        });
    }

    let total = usize::try_from(h.body_len)
        .ok()
        .and_then(|b| b.checked_add(HEADER_LEN));
    let too_large = u64::from(value_len) > item_size_max as u64;
    // `total` is None only where usize is 32 bits and the body is near
    // 4 GiB, which no item size limit allows: answer it as too large too.
    let total = match total {
        Some(total) if !too_large => total,
        _ => {
            return Err(BinError::ValueTooLarge {
                opcode,
                opaque: h.opaque,
                key: &buf[key_start..key_end],
                value_len,
                body_len: h.body_len,
            });
        }
    };

    let Some(body) = buf.get(HEADER_LEN..total) else {
        return Ok(Parsed::Incomplete { need: total });
    };
    let Some((extras, rest)) = body.split_at_checked(extras_len) else {
        return Err(body_too_short(&h));
    };
    let Some((key, value)) = rest.split_at_checked(key_len) else {
        return Err(body_too_short(&h));
    };
    let Some(args) = decode_extras(opcode, extras) else {
        return Err(BinError::BadExtrasLen {
            opcode,
            opaque: h.opaque,
            extras_len: h.extras_len,
        });
    };
    Ok(Parsed::Complete {
        req: Request {
            opcode,
            opaque: h.opaque,
            cas: h.cas,
            vbucket: h.vbucket_or_status,
            datatype: h.datatype,
            extras,
            key,
            value,
            args,
        },
        consumed: total,
    })
}

fn body_too_short(h: &Header) -> BinError<'static> {
    BinError::BodyTooShort {
        opcode: h.opcode,
        opaque: h.opaque,
        key_len: h.key_len,
        extras_len: h.extras_len,
        body_len: h.body_len,
    }
}

/// Decodes validated extras; `None` if the length does not fit (which the
/// shape check already excludes).
fn decode_extras(opcode: Opcode, extras: &[u8]) -> Option<Extras> {
    let be32 = |b: &[u8]| b.first_chunk::<4>().map(|a| u32::from_be_bytes(*a));
    let be64 = |b: &[u8]| b.first_chunk::<8>().map(|a| u64::from_be_bytes(*a));
    Some(match opcode.loud() {
        Opcode::Set | Opcode::Add | Opcode::Replace => {
            let (flags, exptime) = extras.split_at_checked(4)?;
            Extras::Store {
                flags: be32(flags)?,
                exptime: be32(exptime)?,
            }
        }
        Opcode::Incr | Opcode::Decr => {
            let (delta, rest) = extras.split_at_checked(8)?;
            let (initial, exptime) = rest.split_at_checked(8)?;
            Extras::Arith {
                delta: be64(delta)?,
                initial: be64(initial)?,
                exptime: be32(exptime)?,
            }
        }
        Opcode::Touch | Opcode::Gat | Opcode::GatK => Extras::Touch {
            exptime: be32(extras)?,
        },
        Opcode::Flush => Extras::Flush {
            exptime: if extras.is_empty() {
                None
            } else {
                Some(be32(extras)?)
            },
        },
        _ => Extras::None,
    })
}

/// A packet the encoders refused to write (nothing was written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// Keys are limited to 65535 bytes by the header.
    KeyTooLong { len: usize },
    /// Extras are limited to 255 bytes by the header.
    TooManyExtras { len: usize },
    /// extras + key + value must fit the 32-bit body length.
    BodyTooLong { len: u64 },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EncodeError::KeyTooLong { len } => write!(f, "key of {len} bytes exceeds 65535"),
            EncodeError::TooManyExtras { len } => {
                write!(f, "extras of {len} bytes exceed 255")
            }
            EncodeError::BodyTooLong { len } => {
                write!(f, "body of {len} bytes exceeds 4294967295")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Builds a header for `extras`, `key` and `value_len` more bytes.
#[allow(clippy::too_many_arguments)] // mirrors the header fields one to one
fn packet_header(
    magic: u8,
    opcode: u8,
    vbucket_or_status: u16,
    opaque: u32,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value_len: usize,
) -> Result<Header, EncodeError> {
    let key_len =
        u16::try_from(key.len()).map_err(|_| EncodeError::KeyTooLong { len: key.len() })?;
    let extras_len =
        u8::try_from(extras.len()).map_err(|_| EncodeError::TooManyExtras { len: extras.len() })?;
    // Each term fits in u64 on every platform Rust supports.
    let body = extras.len() as u64 + key.len() as u64 + value_len as u64;
    let body_len = u32::try_from(body).map_err(|_| EncodeError::BodyTooLong { len: body })?;
    Ok(Header {
        magic,
        opcode,
        key_len,
        extras_len,
        datatype: 0,
        vbucket_or_status,
        body_len,
        opaque,
        cas,
    })
}

/// Appends a response header, `extras` and `key`; the caller appends
/// exactly `value_len` value bytes right after (zero copy from the item).
/// `opcode` is the request's byte as received (quiet forms included).
#[allow(clippy::too_many_arguments)] // mirrors the header fields one to one
pub fn write_response(
    out: &mut Vec<u8>,
    opcode: u8,
    status: Status,
    opaque: u32,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value_len: usize,
) -> Result<(), EncodeError> {
    let h = packet_header(
        RESPONSE_MAGIC,
        opcode,
        status.as_u16(),
        opaque,
        cas,
        extras,
        key,
        value_len,
    )?;
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    Ok(())
}

/// Appends an error response with memcached's default text for `status`
/// (cas 0, no extras, no key), as every memcached error reply is.
pub fn write_error(out: &mut Vec<u8>, opcode: u8, status: Status, opaque: u32) {
    let text = status.error_text().unwrap_or("");
    write_error_text(out, opcode, status, opaque, text);
}

/// Appends an error response with a specific text, e.g. memcached's
/// `Out of memory allocating item` (its `SERVER_ERROR` texts without the
/// prefix). Texts over 64 KiB are cut: error bodies are short constants.
pub fn write_error_text(out: &mut Vec<u8>, opcode: u8, status: Status, opaque: u32, text: &str) {
    let bytes = text.as_bytes();
    let bytes = bytes.get(..1 << 16).unwrap_or(bytes);
    let h = Header {
        magic: RESPONSE_MAGIC,
        opcode,
        vbucket_or_status: status.as_u16(),
        // At most 65536: fits.
        body_len: bytes.len() as u32,
        opaque,
        ..Header::default()
    };
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(bytes);
}

/// Appends one STAT reply packet (`key` = stat name, value = its text).
/// A STAT reply ends with [`write_stat_end`].
pub fn write_stat(
    out: &mut Vec<u8>,
    opaque: u32,
    key: &[u8],
    value: &[u8],
) -> Result<(), EncodeError> {
    write_response(
        out,
        Opcode::Stat.as_u8(),
        Status::Success,
        opaque,
        0,
        &[],
        key,
        value.len(),
    )?;
    out.extend_from_slice(value);
    Ok(())
}

/// Appends the empty STAT packet that ends a STAT reply.
pub fn write_stat_end(out: &mut Vec<u8>, opaque: u32) {
    let h = Header {
        magic: RESPONSE_MAGIC,
        opcode: Opcode::Stat.as_u8(),
        opaque,
        ..Header::default()
    };
    out.extend_from_slice(&h.encode());
}

/// Appends a whole request packet (for clients, tests and benches).
pub fn write_request(
    out: &mut Vec<u8>,
    opcode: u8,
    opaque: u32,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
) -> Result<(), EncodeError> {
    let h = packet_header(
        REQUEST_MAGIC,
        opcode,
        0,
        opaque,
        cas,
        extras,
        key,
        value.len(),
    )?;
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPAQUE: u32 = 0xdead_beef;
    const LIMIT: usize = 1024 * 1024;

    /// A request header written byte by byte (independent of `Header::encode`).
    fn raw_header(magic: u8, op: u8, key_len: u16, extras_len: u8, body_len: u32) -> Vec<u8> {
        let mut v = vec![magic, op];
        v.extend_from_slice(&key_len.to_be_bytes());
        v.push(extras_len);
        v.push(0);
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&body_len.to_be_bytes());
        v.extend_from_slice(&OPAQUE.to_be_bytes());
        v.extend_from_slice(&[0; 8]);
        v
    }

    /// `buf` padded with `k` up to where memcached judges it: the end of
    /// its extras and key, or a full read buffer if they do not fit.
    fn with_head(buf: &[u8]) -> Vec<u8> {
        let h = Header::decode(buf.first_chunk().expect("a header"));
        let head = HEADER_LEN + usize::from(h.extras_len) + usize::from(h.key_len);
        let mut v = buf.to_vec();
        if v.len() < head.min(READ_BUFFER) {
            v.resize(head.min(READ_BUFFER), b'k');
        }
        v
    }

    /// header + extras + key + value with consistent lengths.
    fn packet(op: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
        let body = extras.len() + key.len() + value.len();
        let mut v = raw_header(0x80, op, key.len() as u16, extras.len() as u8, body as u32);
        v.extend_from_slice(extras);
        v.extend_from_slice(key);
        v.extend_from_slice(value);
        v
    }

    /// The error packet memcached 1.6.18 sent, written byte by byte:
    /// magic 0x81, the request's opcode, no key or extras, datatype 0,
    /// status, bodylen = text length, the request's opaque, cas 0, text.
    fn memcached_error(op: u8, status: u16, text: &str) -> Vec<u8> {
        let mut v = vec![0x81, op, 0, 0, 0, 0];
        v.extend_from_slice(&status.to_be_bytes());
        v.extend_from_slice(&(text.len() as u32).to_be_bytes());
        v.extend_from_slice(&OPAQUE.to_be_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(text.as_bytes());
        v
    }

    fn complete(buf: &[u8]) -> (Request<'_>, usize) {
        match parse_request(buf, LIMIT) {
            Ok(Parsed::Complete { req, consumed }) => (req, consumed),
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    fn store_extras(flags: u32, exptime: u32) -> Vec<u8> {
        let mut v = flags.to_be_bytes().to_vec();
        v.extend_from_slice(&exptime.to_be_bytes());
        v
    }

    fn arith_extras(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
        let mut v = delta.to_be_bytes().to_vec();
        v.extend_from_slice(&initial.to_be_bytes());
        v.extend_from_slice(&exptime.to_be_bytes());
        v
    }

    /// opcode, extras, key, value, decoded extras.
    type Row = (Opcode, Vec<u8>, Vec<u8>, Vec<u8>, Extras);

    /// One valid request per opcode.
    fn valid_table() -> Vec<Row> {
        use Opcode::*;
        let store = store_extras(0xdead_0001, 3600);
        let arith = arith_extras(7, 100, 0xffff_ffff);
        let touch = 60u32.to_be_bytes().to_vec();
        let st = Extras::Store {
            flags: 0xdead_0001,
            exptime: 3600,
        };
        let ar = Extras::Arith {
            delta: 7,
            initial: 100,
            exptime: 0xffff_ffff,
        };
        let to = Extras::Touch { exptime: 60 };
        let k = b"key".to_vec();
        let none = Vec::new();
        vec![
            (Get, none.clone(), k.clone(), none.clone(), Extras::None),
            (GetQ, none.clone(), k.clone(), none.clone(), Extras::None),
            (GetK, none.clone(), k.clone(), none.clone(), Extras::None),
            (GetKQ, none.clone(), k.clone(), none.clone(), Extras::None),
            (Set, store.clone(), k.clone(), b"value".to_vec(), st),
            (SetQ, store.clone(), k.clone(), b"value".to_vec(), st),
            (Add, store.clone(), k.clone(), b"v".to_vec(), st),
            (AddQ, store.clone(), k.clone(), b"v".to_vec(), st),
            (Replace, store.clone(), k.clone(), b"v".to_vec(), st),
            // An empty value is valid (memcached stored it).
            (ReplaceQ, store.clone(), k.clone(), none.clone(), st),
            (Delete, none.clone(), k.clone(), none.clone(), Extras::None),
            (DeleteQ, none.clone(), k.clone(), none.clone(), Extras::None),
            (Incr, arith.clone(), k.clone(), none.clone(), ar),
            (IncrQ, arith.clone(), k.clone(), none.clone(), ar),
            (Decr, arith.clone(), k.clone(), none.clone(), ar),
            (DecrQ, arith.clone(), k.clone(), none.clone(), ar),
            (Quit, none.clone(), none.clone(), none.clone(), Extras::None),
            (
                QuitQ,
                none.clone(),
                none.clone(),
                none.clone(),
                Extras::None,
            ),
            (
                Flush,
                none.clone(),
                none.clone(),
                none.clone(),
                Extras::Flush { exptime: None },
            ),
            (
                FlushQ,
                10u32.to_be_bytes().to_vec(),
                none.clone(),
                none.clone(),
                Extras::Flush { exptime: Some(10) },
            ),
            (Noop, none.clone(), none.clone(), none.clone(), Extras::None),
            (
                Version,
                none.clone(),
                none.clone(),
                none.clone(),
                Extras::None,
            ),
            (
                Append,
                none.clone(),
                k.clone(),
                b"tail".to_vec(),
                Extras::None,
            ),
            (
                AppendQ,
                none.clone(),
                k.clone(),
                b"tail".to_vec(),
                Extras::None,
            ),
            (Prepend, none.clone(), k.clone(), none.clone(), Extras::None),
            (
                PrependQ,
                none.clone(),
                k.clone(),
                b"head".to_vec(),
                Extras::None,
            ),
            (Stat, none.clone(), none.clone(), none.clone(), Extras::None),
            (
                Stat,
                none.clone(),
                b"settings".to_vec(),
                none.clone(),
                Extras::None,
            ),
            (Touch, touch.clone(), k.clone(), none.clone(), to),
            (Gat, touch.clone(), k.clone(), none.clone(), to),
            (GatQ, touch.clone(), k.clone(), none.clone(), to),
            (GatK, touch.clone(), k.clone(), none.clone(), to),
            (GatKQ, touch.clone(), k.clone(), none.clone(), to),
            (
                SaslListMechs,
                none.clone(),
                none.clone(),
                none.clone(),
                Extras::None,
            ),
            (
                SaslAuth,
                none.clone(),
                b"PLAIN".to_vec(),
                b"\0u\0p".to_vec(),
                Extras::None,
            ),
            (
                SaslStep,
                none.clone(),
                b"PLAIN".to_vec(),
                b"abc".to_vec(),
                Extras::None,
            ),
        ]
    }

    #[test]
    fn opcode_bytes_round_trip_and_unknown_bytes_are_none() {
        let mut known = 0;
        for b in 0..=255u8 {
            if let Some(op) = Opcode::from_u8(b) {
                assert_eq!(op.as_u8(), b);
                assert_eq!(u8::from(op), b);
                known += 1;
            }
        }
        assert_eq!(known, Opcode::ALL.len());
        for op in Opcode::ALL {
            assert_eq!(Opcode::from_u8(op.as_u8()), Some(op));
        }
        // Holes memcached answers with "Unknown command" (verified: 1b 1f 25 26 30 3c 3d ff).
        for b in [0x1b, 0x1f, 0x25, 0x26, 0x30, 0x3c, 0x3d, 0xff] {
            assert_eq!(Opcode::from_u8(b), None, "{b:#04x}");
        }
    }

    #[test]
    fn quiet_opcodes_map_to_their_loud_form() {
        use Opcode::*;
        let pairs = [
            (GetQ, Get),
            (GetKQ, GetK),
            (SetQ, Set),
            (AddQ, Add),
            (ReplaceQ, Replace),
            (DeleteQ, Delete),
            (IncrQ, Incr),
            (DecrQ, Decr),
            (QuitQ, Quit),
            (FlushQ, Flush),
            (AppendQ, Append),
            (PrependQ, Prepend),
            (GatQ, Gat),
            (GatKQ, GatK),
        ];
        for (quiet, loud) in pairs {
            assert!(quiet.is_quiet(), "{quiet:?}");
            assert!(!loud.is_quiet(), "{loud:?}");
            assert_eq!(quiet.loud(), loud);
        }
        let quiet_count = Opcode::ALL.iter().filter(|o| o.is_quiet()).count();
        assert_eq!(quiet_count, pairs.len());
        for op in Opcode::ALL {
            assert!(!op.loud().is_quiet());
            if !op.is_quiet() {
                assert_eq!(op.loud(), op);
            }
        }
    }

    #[test]
    fn status_values_and_error_texts_match_memcached() {
        // Texts as received from memcached 1.6.18 (or read in write_bin_error
        // for AuthError/OutOfMemory, which need -S or a full cache).
        let table: [(Status, u16, Option<&str>); 11] = [
            (Status::Success, 0x00, None),
            (Status::KeyNotFound, 0x01, Some("Not found")),
            (Status::KeyExists, 0x02, Some("Data exists for key.")),
            (Status::TooLarge, 0x03, Some("Too large.")),
            (Status::InvalidArguments, 0x04, Some("Invalid arguments")),
            (Status::NotStored, 0x05, Some("Not stored.")),
            (
                Status::NonNumeric,
                0x06,
                Some("Non-numeric server-side value for incr or decr"),
            ),
            (Status::AuthError, 0x20, Some("Auth failure.")),
            (Status::AuthContinue, 0x21, None),
            (Status::UnknownCommand, 0x81, Some("Unknown command")),
            (Status::OutOfMemory, 0x82, Some("Out of memory")),
        ];
        for (status, wire, text) in table {
            assert_eq!(status.as_u16(), wire);
            assert_eq!(Status::from_u16(wire), Some(status));
            assert_eq!(status.error_text(), text);
        }
        assert_eq!(Status::ALL.len(), table.len());
        assert_eq!(Status::from_u16(0x07), None);
    }

    #[test]
    fn every_opcode_parses_its_valid_form() {
        let table = valid_table();
        let mut seen: Vec<Opcode> = table.iter().map(|t| t.0).collect();
        seen.dedup();
        assert_eq!(seen.len(), Opcode::ALL.len(), "one row per opcode");
        for (op, extras, key, value, args) in &table {
            let mut buf = packet(op.as_u8(), extras, key, value);
            // cas, vbucket and datatype are carried through.
            buf[16..24].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
            buf[6..8].copy_from_slice(&7u16.to_be_bytes());
            buf[5] = 5;
            let len = buf.len();
            buf.extend_from_slice(b"\x80trailing");
            let (req, consumed) = complete(&buf);
            assert_eq!(consumed, len, "{op:?}");
            assert_eq!(req.opcode, *op);
            assert_eq!(req.opaque, OPAQUE);
            assert_eq!(req.cas, 0x0102_0304_0506_0708);
            assert_eq!(req.vbucket, 7);
            assert_eq!(req.datatype, 5);
            assert_eq!(req.extras, &extras[..]);
            assert_eq!(req.key, &key[..]);
            assert_eq!(req.value, &value[..]);
            assert_eq!(req.args, *args, "{op:?}");
        }
    }

    #[test]
    fn a_key_of_250_bytes_and_any_byte_values_is_accepted() {
        let key: Vec<u8> = (0..250).map(|i| (i * 7) as u8).collect();
        let buf = packet(0x00, &[], &key, &[]);
        let (req, consumed) = complete(&buf);
        assert_eq!(req.key.len(), 250);
        assert_eq!(req.key, &key[..]);
        assert_eq!(consumed, 24 + 250);
    }

    #[test]
    fn a_value_at_the_limit_is_accepted() {
        let value = vec![b'x'; 64];
        let buf = packet(0x01, &store_extras(0, 0), b"k", &value);
        match parse_request(&buf, 64) {
            Ok(Parsed::Complete { req, consumed }) => {
                assert_eq!(req.value.len(), 64);
                assert_eq!(consumed, buf.len());
            }
            other => panic!("{other:?}"),
        }
    }

    /// Each row: a malformed request, the error, what to do, and the exact
    /// reply. Replies were recorded from memcached 1.6.18 on 127.0.0.1
    /// (`-B binary`) with raw packets; `closed` is what memcached did next.
    #[test]
    fn validation_errors_match_memcached() {
        struct Case {
            name: &'static str,
            buf: Vec<u8>,
            check: fn(&BinError<'_>) -> bool,
            action: ErrorAction,
            reply: Vec<u8>,
        }
        let inval = |op: u8| memcached_error(op, 0x04, "Invalid arguments");
        let unknown = |op: u8| memcached_error(op, 0x81, "Unknown command");
        let close_inval = ErrorAction::ReplyAndClose(Status::InvalidArguments);
        let store = store_extras(0, 0);
        let arith = arith_extras(1, 5, 0);
        let four = [0u8; 4];
        let too_large = memcached_error(0x01, 0x03, "Too large.");
        let cases = vec![
            // Wire: connection closed, 0 bytes.
            Case {
                name: "bad magic 0x81",
                buf: raw_header(0x81, 0x0a, 0, 0, 0),
                check: |e| matches!(e, BinError::BadMagic { magic: 0x81 }),
                action: ErrorAction::Close,
                reply: vec![],
            },
            // Wire: 39 bytes `Unknown command` on opcode 00, closed.
            Case {
                name: "keylen + extlen > bodylen (GET)",
                buf: [raw_header(0x80, 0x00, 3, 0, 2), b"abc".to_vec()].concat(),
                check: |e| {
                    matches!(
                        e,
                        BinError::BodyTooShort {
                            key_len: 3,
                            body_len: 2,
                            ..
                        }
                    )
                },
                action: ErrorAction::ReplyAndClose(Status::UnknownCommand),
                reply: unknown(0x00),
            },
            // Wire: same on opcode 01 (the CVE-2016-8705 shape), closed.
            Case {
                name: "keylen + extlen > bodylen (SET)",
                buf: [raw_header(0x80, 0x01, 1, 8, 8), vec![0; 9]].concat(),
                check: |e| matches!(e, BinError::BodyTooShort { extras_len: 8, .. }),
                action: ErrorAction::ReplyAndClose(Status::UnknownCommand),
                reply: unknown(0x01),
            },
            // Wire: an unknown opcode with impossible lengths is closed too.
            Case {
                name: "keylen + extlen > bodylen (unknown opcode)",
                buf: [raw_header(0x80, 0x40, 2, 0, 1), b"kk".to_vec()].concat(),
                check: |e| matches!(e, BinError::BodyTooShort { opcode: 0x40, .. }),
                action: ErrorAction::ReplyAndClose(Status::UnknownCommand),
                reply: unknown(0x40),
            },
            // CVE-2016-8706 shape: SASL_AUTH whose key exceeds the body.
            Case {
                name: "keylen > bodylen (SASL_AUTH)",
                buf: raw_header(0x80, 0x21, 300, 0, 10),
                check: |e| matches!(e, BinError::BodyTooShort { opcode: 0x21, .. }),
                action: ErrorAction::ReplyAndClose(Status::UnknownCommand),
                reply: unknown(0x21),
            },
            // Wire: 41 bytes `Invalid arguments`, closed.
            Case {
                name: "key of 251 bytes (GET)",
                buf: [raw_header(0x80, 0x00, 251, 0, 251), vec![b'k'; 251]].concat(),
                check: |e| matches!(e, BinError::KeyTooLong { key_len: 251, .. }),
                action: close_inval,
                reply: inval(0x00),
            },
            // Wire: the key check comes before the opcode check.
            Case {
                name: "key of 251 bytes (unknown opcode)",
                buf: [raw_header(0x80, 0x40, 251, 0, 251), vec![b'k'; 251]].concat(),
                check: |e| matches!(e, BinError::KeyTooLong { opcode: 0x40, .. }),
                action: close_inval,
                reply: inval(0x40),
            },
            // Wire: 16,384 bytes sent (header, then `k`s), no reply, reset.
            Case {
                name: "huge extlen and keylen",
                buf: raw_header(0x80, 0x01, 0xffff, 0xff, 0xffff_ffff),
                check: |e| {
                    matches!(
                        e,
                        BinError::HeadOverflow {
                            key_len: 0xffff,
                            extras_len: 0xff,
                        }
                    )
                },
                action: ErrorAction::Close,
                reply: vec![],
            },
            // Wire: `Unknown command` on opcode 40, then the NOOP is answered.
            Case {
                name: "unknown opcode, empty",
                buf: raw_header(0x80, 0x40, 0, 0, 0),
                check: |e| matches!(e, BinError::UnknownOpcode { opcode: 0x40, .. }),
                action: ErrorAction::ReplyAndSkip {
                    status: Status::UnknownCommand,
                    skip: 24,
                },
                reply: unknown(0x40),
            },
            // Wire: body swallowed, the following NOOP answered.
            Case {
                name: "unknown opcode with a body",
                buf: [raw_header(0x80, 0x40, 0, 0, 5), b"vvvvv".to_vec()].concat(),
                check: |e| matches!(e, BinError::UnknownOpcode { body_len: 5, .. }),
                action: ErrorAction::ReplyAndSkip {
                    status: Status::UnknownCommand,
                    skip: 29,
                },
                reply: unknown(0x40),
            },
            // Wire: memcached skips 24 + 2 + 5 here and eats the next NOOP
            // (divergence 1 in the module docs): we skip the packet only.
            Case {
                name: "unknown opcode with a key and a body",
                buf: [raw_header(0x80, 0x40, 2, 0, 5), b"kkvvv".to_vec()].concat(),
                check: |e| matches!(e, BinError::UnknownOpcode { .. }),
                action: ErrorAction::ReplyAndSkip {
                    status: Status::UnknownCommand,
                    skip: 29,
                },
                reply: unknown(0x40),
            },
            // Wire: same reply, then memcached parses on after the header
            // (int overflow; divergence 3): we close.
            Case {
                name: "unknown opcode, bodylen 0x80000000",
                buf: raw_header(0x80, 0x40, 0, 0, 0x8000_0000),
                check: |e| matches!(e, BinError::UnknownOpcode { .. }),
                action: ErrorAction::ReplyAndClose(Status::UnknownCommand),
                reply: unknown(0x40),
            },
            // Wire: memcached waits to swallow 0x7fffffff bytes; so do we.
            Case {
                name: "unknown opcode, bodylen 0x7fffffff",
                buf: raw_header(0x80, 0x40, 0, 0, 0x7fff_ffff),
                check: |e| matches!(e, BinError::UnknownOpcode { .. }),
                action: ErrorAction::ReplyAndSkip {
                    status: Status::UnknownCommand,
                    skip: 24 + 0x7fff_ffff,
                },
                reply: unknown(0x40),
            },
            // Wire (this and all below): 41 bytes `Invalid arguments` with
            // the request's opcode, then closed.
            Case {
                name: "SET with 4 bytes of extras",
                buf: packet(0x01, &four, b"key", b"v"),
                check: |e| matches!(e, BinError::BadExtrasLen { extras_len: 4, .. }),
                action: close_inval,
                reply: inval(0x01),
            },
            Case {
                name: "SETQ with 4 bytes of extras (reply not hidden)",
                buf: packet(0x11, &four, b"key", b"v"),
                check: |e| {
                    matches!(
                        e,
                        BinError::BadExtrasLen {
                            opcode: Opcode::SetQ,
                            ..
                        }
                    )
                },
                action: close_inval,
                reply: inval(0x11),
            },
            Case {
                name: "SET with 12 bytes of extras",
                buf: packet(0x01, &[0; 12], b"key", b"v"),
                check: |e| matches!(e, BinError::BadExtrasLen { extras_len: 12, .. }),
                action: close_inval,
                reply: inval(0x01),
            },
            Case {
                name: "SET without a key",
                buf: packet(0x01, &store, b"", b"v"),
                check: |e| {
                    matches!(
                        e,
                        BinError::MissingKey {
                            opcode: Opcode::Set,
                            ..
                        }
                    )
                },
                action: close_inval,
                reply: inval(0x01),
            },
            Case {
                name: "GET without a key",
                buf: packet(0x00, &[], b"", b""),
                check: |e| matches!(e, BinError::MissingKey { .. }),
                action: close_inval,
                reply: inval(0x00),
            },
            Case {
                name: "GETQ without a key",
                buf: packet(0x09, &[], b"", b""),
                check: |e| {
                    matches!(
                        e,
                        BinError::MissingKey {
                            opcode: Opcode::GetQ,
                            ..
                        }
                    )
                },
                action: close_inval,
                reply: inval(0x09),
            },
            Case {
                name: "GET with extras",
                buf: packet(0x00, &four, b"key", b""),
                check: |e| matches!(e, BinError::BadExtrasLen { .. }),
                action: close_inval,
                reply: inval(0x00),
            },
            Case {
                name: "GET with a value",
                buf: packet(0x00, &[], b"key", b"vv"),
                check: |e| matches!(e, BinError::UnexpectedValue { value_len: 2, .. }),
                action: close_inval,
                reply: inval(0x00),
            },
            Case {
                name: "DELETE with extras",
                buf: packet(0x04, &four, b"key", b""),
                check: |e| matches!(e, BinError::BadExtrasLen { .. }),
                action: close_inval,
                reply: inval(0x04),
            },
            Case {
                name: "DELETE with a value",
                buf: packet(0x04, &[], b"key", b"v"),
                check: |e| matches!(e, BinError::UnexpectedValue { .. }),
                action: close_inval,
                reply: inval(0x04),
            },
            Case {
                name: "DELETEQ without a key",
                buf: packet(0x14, &[], b"", b""),
                check: |e| matches!(e, BinError::MissingKey { .. }),
                action: close_inval,
                reply: inval(0x14),
            },
            Case {
                name: "INCR with 16 bytes of extras",
                buf: packet(0x05, &arith[..16], b"key", b""),
                check: |e| matches!(e, BinError::BadExtrasLen { extras_len: 16, .. }),
                action: close_inval,
                reply: inval(0x05),
            },
            Case {
                name: "INCR without extras",
                buf: packet(0x05, &[], b"key", b""),
                check: |e| matches!(e, BinError::BadExtrasLen { extras_len: 0, .. }),
                action: close_inval,
                reply: inval(0x05),
            },
            Case {
                name: "INCR without a key",
                buf: packet(0x05, &arith, b"", b""),
                check: |e| matches!(e, BinError::MissingKey { .. }),
                action: close_inval,
                reply: inval(0x05),
            },
            Case {
                name: "INCR with a value",
                buf: packet(0x05, &arith, b"key", b"vv"),
                check: |e| matches!(e, BinError::UnexpectedValue { .. }),
                action: close_inval,
                reply: inval(0x05),
            },
            Case {
                name: "FLUSH with 8 bytes of extras",
                buf: packet(0x08, &[0; 8], b"", b""),
                check: |e| matches!(e, BinError::BadExtrasLen { extras_len: 8, .. }),
                action: close_inval,
                reply: inval(0x08),
            },
            Case {
                name: "FLUSH with a key",
                buf: packet(0x08, &[], b"k", b""),
                check: |e| matches!(e, BinError::UnexpectedKey { key_len: 1, .. }),
                action: close_inval,
                reply: inval(0x08),
            },
            Case {
                name: "FLUSH with a value",
                buf: packet(0x08, &[], b"", b"v"),
                check: |e| matches!(e, BinError::UnexpectedValue { .. }),
                action: close_inval,
                reply: inval(0x08),
            },
            Case {
                name: "FLUSH with an exptime and a value",
                buf: packet(0x08, &four, b"", b"v"),
                check: |e| matches!(e, BinError::UnexpectedValue { .. }),
                action: close_inval,
                reply: inval(0x08),
            },
            Case {
                name: "NOOP with a value",
                buf: packet(0x0a, &[], b"", b"v"),
                check: |e| matches!(e, BinError::UnexpectedValue { .. }),
                action: close_inval,
                reply: inval(0x0a),
            },
            Case {
                name: "NOOP with a key",
                buf: packet(0x0a, &[], b"k", b""),
                check: |e| matches!(e, BinError::UnexpectedKey { .. }),
                action: close_inval,
                reply: inval(0x0a),
            },
            Case {
                name: "NOOP with extras",
                buf: packet(0x0a, &[1], b"", b""),
                check: |e| matches!(e, BinError::BadExtrasLen { extras_len: 1, .. }),
                action: close_inval,
                reply: inval(0x0a),
            },
            Case {
                name: "VERSION with a value",
                buf: packet(0x0b, &[], b"", b"v"),
                check: |e| matches!(e, BinError::UnexpectedValue { .. }),
                action: close_inval,
                reply: inval(0x0b),
            },
            Case {
                name: "QUIT with a value",
                buf: packet(0x07, &[], b"", b"v"),
                check: |e| matches!(e, BinError::UnexpectedValue { .. }),
                action: close_inval,
                reply: inval(0x07),
            },
            Case {
                name: "SASL_LIST_MECHS with a value",
                buf: packet(0x20, &[], b"", b"v"),
                check: |e| matches!(e, BinError::UnexpectedValue { .. }),
                action: close_inval,
                reply: inval(0x20),
            },
            Case {
                name: "APPEND with extras",
                buf: packet(0x0e, &[0; 8], b"key", b"z"),
                check: |e| matches!(e, BinError::BadExtrasLen { extras_len: 8, .. }),
                action: close_inval,
                reply: inval(0x0e),
            },
            Case {
                name: "APPEND without a key",
                buf: packet(0x0e, &[], b"", b"z"),
                check: |e| matches!(e, BinError::MissingKey { .. }),
                action: close_inval,
                reply: inval(0x0e),
            },
            Case {
                name: "TOUCH without extras",
                buf: packet(0x1c, &[], b"key", b""),
                check: |e| matches!(e, BinError::BadExtrasLen { extras_len: 0, .. }),
                action: close_inval,
                reply: inval(0x1c),
            },
            Case {
                name: "TOUCH without a key",
                buf: packet(0x1c, &four, b"", b""),
                check: |e| matches!(e, BinError::MissingKey { .. }),
                action: close_inval,
                reply: inval(0x1c),
            },
            // Wire: memcached answers the TOUCH and parses "vv" as the next
            // packet (bad magic, close): divergence 2, we refuse the value.
            Case {
                name: "TOUCH with a value",
                buf: packet(0x1c, &four, b"key", b"vv"),
                check: |e| matches!(e, BinError::UnexpectedValue { value_len: 2, .. }),
                action: close_inval,
                reply: inval(0x1c),
            },
            Case {
                name: "GATKQ with a value",
                buf: packet(0x24, &four, b"key", b"vv"),
                check: |e| matches!(e, BinError::UnexpectedValue { .. }),
                action: close_inval,
                reply: inval(0x24),
            },
            Case {
                name: "STAT with extras",
                buf: packet(0x10, &four, b"", b""),
                check: |e| matches!(e, BinError::BadExtrasLen { .. }),
                action: close_inval,
                reply: inval(0x10),
            },
            // Wire: memcached answers the STAT and parses the value as the
            // next packet: divergence 2.
            Case {
                name: "STAT with a value",
                buf: packet(0x10, &[], b"items", b"v"),
                check: |e| matches!(e, BinError::UnexpectedValue { .. }),
                action: close_inval,
                reply: inval(0x10),
            },
            Case {
                name: "SASL_AUTH without a key",
                buf: packet(0x21, &[], b"", b"abc"),
                check: |e| matches!(e, BinError::MissingKey { .. }),
                action: close_inval,
                reply: inval(0x21),
            },
            Case {
                name: "SASL_AUTH with extras",
                buf: packet(0x21, &[1], b"PLAIN", b"abc"),
                check: |e| matches!(e, BinError::BadExtrasLen { .. }),
                action: close_inval,
                reply: inval(0x21),
            },
            // Wire: 58 bytes `Too large.` (status 03), value swallowed, the
            // next NOOP answered.
            Case {
                name: "SET value above the limit",
                buf: packet(0x01, &store, b"key", &vec![b'x'; LIMIT + 1]),
                check: |e| {
                    matches!(e, BinError::ValueTooLarge { key: b"key", value_len, .. }
                        if *value_len as usize == LIMIT + 1)
                },
                action: ErrorAction::ReplyAndSkip {
                    status: Status::TooLarge,
                    skip: 24 + 8 + 3 + LIMIT + 1,
                },
                reply: too_large.clone(),
            },
            Case {
                name: "SETQ value above the limit (reply not hidden)",
                buf: packet(0x11, &store, b"key", &vec![b'x'; LIMIT + 1]),
                check: |e| {
                    matches!(
                        e,
                        BinError::ValueTooLarge {
                            opcode: Opcode::SetQ,
                            ..
                        }
                    )
                },
                action: ErrorAction::ReplyAndSkip {
                    status: Status::TooLarge,
                    skip: 24 + 8 + 3 + LIMIT + 1,
                },
                reply: memcached_error(0x11, 0x03, "Too large."),
            },
            // Wire: memcached waits to swallow; so do we (nothing buffered).
            Case {
                name: "SET bodylen 0x7fffffff",
                buf: [raw_header(0x80, 0x01, 1, 8, 0x7fff_ffff), vec![0; 9]].concat(),
                check: |e| matches!(e, BinError::ValueTooLarge { key: b"\0", .. }),
                action: ErrorAction::ReplyAndSkip {
                    status: Status::TooLarge,
                    skip: 24 + 0x7fff_ffff,
                },
                reply: too_large.clone(),
            },
            // Wire: `Too large.`, then memcached parses the bytes after the
            // key as commands (int overflow; divergence 3): we close.
            Case {
                name: "SET bodylen 0xffffffe8",
                buf: [raw_header(0x80, 0x01, 1, 8, 0xffff_ffe8), vec![0; 9]].concat(),
                check: |e| {
                    matches!(
                        e,
                        BinError::ValueTooLarge {
                            value_len: 0xffff_ffdf,
                            ..
                        }
                    )
                },
                action: ErrorAction::ReplyAndClose(Status::TooLarge),
                reply: too_large.clone(),
            },
            Case {
                name: "APPEND bodylen 0xffffffe8",
                buf: [raw_header(0x80, 0x0e, 1, 0, 0xffff_ffe8), b"k".to_vec()].concat(),
                check: |e| matches!(e, BinError::ValueTooLarge { key: b"k", .. }),
                action: ErrorAction::ReplyAndClose(Status::TooLarge),
                reply: memcached_error(0x0e, 0x03, "Too large."),
            },
            // Read in process_bin_sasl_auth (with -S): an item that cannot
            // be allocated answers ENOMEM and swallows the data.
            Case {
                name: "SASL_AUTH data above the limit",
                buf: [
                    raw_header(0x80, 0x21, 5, 0, 5 + 2 * LIMIT as u32),
                    b"PLAIN".to_vec(),
                ]
                .concat(),
                check: |e| matches!(e, BinError::ValueTooLarge { key: b"PLAIN", .. }),
                action: ErrorAction::ReplyAndSkip {
                    status: Status::OutOfMemory,
                    skip: 24 + 5 + 2 * LIMIT,
                },
                reply: memcached_error(0x21, 0x82, "Out of memory"),
            },
        ];
        for case in &cases {
            // Judged once extras and key are in, not a byte sooner.
            let buf = with_head(&case.buf);
            let head = with_head(&case.buf[..HEADER_LEN]).len();
            if head > HEADER_LEN {
                assert_eq!(
                    parse_request(&buf[..head - 1], LIMIT),
                    Ok(Parsed::Incomplete { need: head }),
                    "{}",
                    case.name
                );
            }
            let err = match parse_request(&buf, LIMIT) {
                Err(e) => e,
                Ok(p) => panic!("{}: expected an error, got {p:?}", case.name),
            };
            assert!((case.check)(&err), "{}: wrong error {err:?}", case.name);
            assert_eq!(err.action(), case.action, "{}", case.name);
            let mut out = Vec::new();
            assert_eq!(
                err.write_reply(&mut out),
                !case.reply.is_empty(),
                "{}",
                case.name
            );
            assert_eq!(out, case.reply, "{}", case.name);
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn only_framing_faults_precede_the_sasl_check() {
        // Read in dispatch_bin_command: the lengths check, then the SASL
        // check, then the key length and per-opcode checks.
        let short = raw_header(0x80, 0x00, 3, 0, 2);
        let long_key = raw_header(0x80, 0x00, 251, 0, 251);
        let unknown = raw_header(0x80, 0x40, 0, 0, 0);
        let no_key = raw_header(0x80, 0x00, 0, 0, 0);
        let overflow = raw_header(0x80, 0x00, 0xffff, 0, 0xffff);
        let expected = [
            (vec![0x00; HEADER_LEN], true),
            (overflow, true),
            (short, true),
            (long_key, false),
            (unknown, false),
            (no_key, false),
        ];
        for (buf, before) in expected {
            let buf = with_head(&buf);
            let err = parse_request(&buf, LIMIT).unwrap_err();
            assert_eq!(err.checked_before_auth(), before, "{err:?}");
        }
    }

    #[test]
    fn every_split_point_is_incomplete_until_the_end() {
        let mut packets: Vec<Vec<u8>> = valid_table()
            .iter()
            .map(|(op, e, k, v, _)| packet(op.as_u8(), e, k, v))
            .collect();
        packets.push(packet(
            0x01,
            &store_extras(1, 2),
            &[b'k'; 250],
            &[b'v'; 300],
        ));
        for buf in &packets {
            for cut in 0..buf.len() {
                match parse_request(&buf[..cut], LIMIT) {
                    Ok(Parsed::Incomplete { need }) => {
                        assert!(need > cut && need <= buf.len(), "cut {cut} need {need}");
                    }
                    other => panic!("cut {cut} of {buf:?}: {other:?}"),
                }
            }
            let (_, consumed) = complete(buf);
            assert_eq!(consumed, buf.len());
        }
    }

    #[test]
    fn faults_wait_for_extras_and_key() {
        // Measured on memcached 1.6.18: a GET header with keylen 251 gets no
        // reply until the 251 key bytes are in; then `Invalid arguments`.
        let buf = [raw_header(0x80, 0x00, 251, 0, 251), vec![b'k'; 251]].concat();
        for cut in HEADER_LEN..buf.len() {
            assert_eq!(
                parse_request(&buf[..cut], LIMIT),
                Ok(Parsed::Incomplete { need: buf.len() }),
                "cut {cut}"
            );
        }
        assert!(matches!(
            parse_request(&buf, LIMIT),
            Err(BinError::KeyTooLong { .. })
        ));
        // Lengths that contradict each other wait for extras and key too,
        // even where those run past the stated body.
        let short = [raw_header(0x80, 0x01, 2, 8, 6), vec![0; 10]].concat();
        assert_eq!(
            parse_request(&short[..33], LIMIT),
            Ok(Parsed::Incomplete { need: 34 })
        );
        assert!(matches!(
            parse_request(&short, LIMIT),
            Err(BinError::BodyTooShort { .. })
        ));
        // A bad magic is judged as soon as the header is there, and not
        // before.
        assert!(matches!(
            parse_request(&[0x00], LIMIT),
            Ok(Parsed::Incomplete { need: HEADER_LEN })
        ));
        assert!(matches!(
            parse_request(&[0x00; HEADER_LEN], LIMIT),
            Err(BinError::BadMagic { magic: 0 })
        ));
        assert_eq!(
            parse_request(&[], LIMIT),
            Ok(Parsed::Incomplete { need: HEADER_LEN })
        );
    }

    #[test]
    fn extras_and_key_beyond_the_read_buffer_close_once_it_is_full() {
        // Measured on memcached 1.6.18: keylen 16360 (24 + 16360 = 16384
        // bytes) gets `Invalid arguments`; keylen 16361 gets no reply and a
        // reset once 16384 bytes are in.
        let fits = with_head(&raw_header(0x80, 0x00, 16360, 0, 16360));
        assert_eq!(fits.len(), READ_BUFFER);
        assert!(matches!(
            parse_request(&fits, LIMIT),
            Err(BinError::KeyTooLong { key_len: 16360, .. })
        ));
        let over = [raw_header(0x80, 0x00, 16361, 0, 16361), vec![b'k'; 16361]].concat();
        for cut in [HEADER_LEN, 1000, READ_BUFFER - 1] {
            assert_eq!(
                parse_request(&over[..cut], LIMIT),
                Ok(Parsed::Incomplete { need: READ_BUFFER }),
                "cut {cut}"
            );
        }
        for cut in [READ_BUFFER, over.len()] {
            let err = parse_request(&over[..cut], LIMIT).unwrap_err();
            assert_eq!(
                err,
                BinError::HeadOverflow {
                    key_len: 16361,
                    extras_len: 0
                }
            );
            assert_eq!(err.action(), ErrorAction::Close);
            assert!(!err.write_reply(&mut Vec::new()));
        }
        // A datagram is read whole: its head is judged as any other.
        assert_eq!(
            parse_datagram_request(&over[..READ_BUFFER], LIMIT),
            Ok(Parsed::Incomplete { need: over.len() })
        );
        assert!(matches!(
            parse_datagram_request(&over, LIMIT),
            Err(BinError::KeyTooLong { key_len: 16361, .. })
        ));
    }

    #[test]
    fn an_oversized_value_waits_for_the_key_only() {
        let full = packet(0x01, &store_extras(0, 0), b"key", &[b'x'; 100]);
        for cut in 24..35 {
            assert_eq!(
                parse_request(&full[..cut], 10),
                Ok(Parsed::Incomplete { need: 35 }),
                "cut {cut}"
            );
        }
        for cut in 35..=full.len() {
            assert!(matches!(
                parse_request(&full[..cut], 10),
                Err(BinError::ValueTooLarge {
                    key: b"key",
                    value_len: 100,
                    ..
                })
            ));
        }
    }

    #[test]
    fn pipelined_packets_parse_one_after_another() {
        let mut buf = Vec::new();
        for (op, e, k, v, _) in valid_table() {
            buf.extend_from_slice(&packet(op.as_u8(), &e, &k, &v));
        }
        let mut rest = &buf[..];
        let mut ops = Vec::new();
        while !rest.is_empty() {
            let (req, consumed) = complete(rest);
            ops.push(req.opcode);
            rest = &rest[consumed..];
        }
        let expected: Vec<Opcode> = valid_table().iter().map(|t| t.0).collect();
        assert_eq!(ops, expected);
    }

    #[test]
    fn header_encoding_round_trips() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let h = Header {
                magic: x as u8,
                opcode: (x >> 8) as u8,
                key_len: (x >> 16) as u16,
                extras_len: (x >> 32) as u8,
                datatype: (x >> 40) as u8,
                vbucket_or_status: (x >> 48) as u16,
                body_len: (x >> 3) as u32,
                opaque: (x >> 29) as u32,
                cas: x.rotate_left(11),
            };
            let bytes = h.encode();
            assert_eq!(Header::decode(&bytes), h);
            assert_eq!(bytes[2..4], h.key_len.to_be_bytes());
            assert_eq!(bytes[16..24], h.cas.to_be_bytes());
        }
    }

    #[test]
    fn get_hit_response_is_memcached_shaped() {
        // GET hit: extras = flags, no key, value appended by the caller.
        let mut out = Vec::new();
        write_response(
            &mut out,
            0x00,
            Status::Success,
            OPAQUE,
            7,
            &0x2au32.to_be_bytes(),
            b"",
            5,
        )
        .unwrap();
        out.extend_from_slice(b"hello");
        let expected: &[u8] = &[
            0x81, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00,
            0x00, // magic op keylen extlen dt status
            0x00, 0x00, 0x00, 0x09, 0xde, 0xad, 0xbe, 0xef, // bodylen opaque
            0, 0, 0, 0, 0, 0, 0, 7, // cas
            0, 0, 0, 0x2a, b'h', b'e', b'l', b'l', b'o',
        ];
        assert_eq!(out, expected);
        // GETK miss, as memcached sent it: status 1, key echoed, no text.
        let mut out = Vec::new();
        write_response(
            &mut out,
            0x0c,
            Status::KeyNotFound,
            OPAQUE,
            0,
            &[],
            b"nokey",
            0,
        )
        .unwrap();
        let mut expected = vec![0x81, 0x0c, 0x00, 0x05, 0x00, 0x00, 0x00, 0x01];
        expected.extend_from_slice(&[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(b"nokey");
        assert_eq!(out, expected);
    }

    #[test]
    fn getk_hit_response_matches_the_wire() {
        // Wire: SET hit/flags 0x2a/"hello" (cas 15), then GETK hit ->
        // 810c0003 04000000 0000000c deadbeef 000000000000000f 0000002a "hit" "hello".
        let mut out = Vec::new();
        write_response(
            &mut out,
            Opcode::GetK.as_u8(),
            Status::Success,
            OPAQUE,
            15,
            &0x2au32.to_be_bytes(),
            b"hit",
            5,
        )
        .unwrap();
        out.extend_from_slice(b"hello");
        let wire = "810c000304000000 0000000cdeadbeef 000000000000000f 0000002a 686974 68656c6c6f";
        let hex: String = wire.split_whitespace().collect();
        let expected: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn stat_packets_are_memcached_shaped() {
        // Wire: `stat settings` -> op 10, keylen 8, bodylen 12, "maxconns1024",
        // ... then an empty packet with the same opaque.
        let mut out = Vec::new();
        write_stat(&mut out, OPAQUE, b"maxconns", b"1024").unwrap();
        write_stat_end(&mut out, OPAQUE);
        let mut expected = vec![0x81, 0x10, 0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 12];
        expected.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(b"maxconns1024");
        expected.extend_from_slice(&[0x81, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(out, expected);
    }

    #[test]
    fn error_helpers_write_memcached_texts() {
        // Wire: INCR on a non-numeric value -> 70 bytes, status 6.
        let mut out = Vec::new();
        write_error(&mut out, 0x05, Status::NonNumeric, OPAQUE);
        assert_eq!(
            out,
            memcached_error(0x05, 0x06, "Non-numeric server-side value for incr or decr")
        );
        // out_of_memory() strips "SERVER_ERROR " and sends the rest.
        let mut out = Vec::new();
        write_error_text(
            &mut out,
            0x01,
            Status::OutOfMemory,
            OPAQUE,
            "Out of memory allocating item",
        );
        assert_eq!(
            out,
            memcached_error(0x01, 0x82, "Out of memory allocating item")
        );
        // A status without text gets an empty body.
        let mut out = Vec::new();
        write_error(&mut out, 0x21, Status::AuthContinue, OPAQUE);
        assert_eq!(out.len(), HEADER_LEN);
        assert_eq!(out[8..12], [0, 0, 0, 0]);
    }

    #[test]
    fn encoders_refuse_lengths_the_header_cannot_hold() {
        let mut out = vec![1, 2, 3];
        let key = vec![b'k'; 65536];
        assert_eq!(
            write_response(&mut out, 0, Status::Success, 0, 0, &[], &key, 0),
            Err(EncodeError::KeyTooLong { len: 65536 })
        );
        assert_eq!(
            write_response(&mut out, 0, Status::Success, 0, 0, &[0; 256], b"", 0),
            Err(EncodeError::TooManyExtras { len: 256 })
        );
        assert_eq!(
            write_response(
                &mut out,
                0,
                Status::Success,
                0,
                0,
                &[0; 4],
                b"k",
                u32::MAX as usize
            ),
            Err(EncodeError::BodyTooLong {
                len: u64::from(u32::MAX) + 5
            })
        );
        assert_eq!(out, [1, 2, 3], "nothing written on error");
        assert!(!EncodeError::KeyTooLong { len: 1 }.to_string().is_empty());
    }

    #[test]
    fn write_request_output_parses_back() {
        let mut buf = Vec::new();
        let extras = store_extras(5, 6);
        write_request(&mut buf, 0x01, 77, 99, &extras, b"key", b"val").unwrap();
        let (req, consumed) = complete(&buf);
        assert_eq!(consumed, buf.len());
        assert_eq!(req.opaque, 77);
        assert_eq!(req.cas, 99);
        assert_eq!(
            req.args,
            Extras::Store {
                flags: 5,
                exptime: 6
            }
        );
        assert_eq!((req.key, req.value), (&b"key"[..], &b"val"[..]));
    }

    #[test]
    fn types_stay_small() {
        assert!(std::mem::size_of::<Request<'_>>() <= 96);
        assert!(std::mem::size_of::<BinError<'_>>() <= 40);
        assert!(std::mem::size_of::<Parsed<'_>>() <= 104);
    }

    /// Checks what the fuzz target checks, on one buffer.
    fn check_invariants(data: &[u8], limit: usize) {
        let mut rest = data;
        for _ in 0..64 {
            match parse_request(rest, limit) {
                Ok(Parsed::Incomplete { need }) => {
                    assert!(need > rest.len());
                    return;
                }
                Ok(Parsed::Complete { req, consumed }) => {
                    assert!(consumed >= HEADER_LEN && consumed <= rest.len());
                    assert!(req.key.len() <= KEY_MAX_LEN);
                    assert!(req.value.len() <= limit);
                    let body = req.extras.len() + req.key.len() + req.value.len();
                    assert_eq!(body + HEADER_LEN, consumed);
                    let base = rest.as_ptr() as usize;
                    assert_eq!(req.extras.as_ptr() as usize, base + HEADER_LEN);
                    assert_eq!(
                        req.key.as_ptr() as usize,
                        base + HEADER_LEN + req.extras.len()
                    );
                    assert_eq!(
                        req.value.as_ptr() as usize + req.value.len(),
                        base + consumed
                    );
                    rest = &rest[consumed..];
                }
                Err(e) => {
                    let mut out = Vec::new();
                    let wrote = e.write_reply(&mut out);
                    assert_eq!(wrote, e.action() != ErrorAction::Close);
                    match e.action() {
                        ErrorAction::ReplyAndSkip { skip, .. } if skip <= rest.len() => {
                            assert!(skip >= HEADER_LEN);
                            rest = &rest[skip..];
                        }
                        _ => return,
                    }
                }
            }
        }
    }

    #[test]
    fn random_bytes_never_break_the_invariants() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut buf = Vec::with_capacity(1024);
        for round in 0..20_000 {
            buf.clear();
            let len = (next() % 700) as usize;
            for _ in 0..len {
                buf.push(next() as u8);
            }
            // Bias towards plausible headers so the deep paths run too.
            if buf.len() >= HEADER_LEN && round % 4 != 0 {
                let r = next();
                buf[0] = 0x80;
                buf[1] = (r % 0x28) as u8;
                buf[2] = 0;
                buf[3] = (r >> 8) as u8 % 40;
                buf[4] = [0, 4, 8, 20, 3][(r >> 16) as usize % 5];
                let body = u32::from(buf[3]) + u32::from(buf[4]) + (r >> 24) as u32 % 64;
                buf[8..12].copy_from_slice(&body.to_be_bytes());
            }
            check_invariants(&buf, 32);
            check_invariants(&buf, LIMIT);
        }
    }
}
