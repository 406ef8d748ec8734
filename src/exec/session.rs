//! Which protocol a connection speaks, decided by its first byte.
//!
//! With `-B auto` (the default) a connection whose first byte is 0x80 (the
//! binary request magic) speaks the binary protocol for its whole life;
//! anything else is text. `-B ascii` and `-B binary` force one protocol;
//! a listener's `proto[...]:` prefix (`-l`) does the same for its own
//! connections.

use crate::config::Protocol;
use crate::protocol::binary::REQUEST_MAGIC;

use super::binary::Session as BinarySession;
use super::text::{Progress, Session as TextSession};
use super::Ctx;

/// Per-connection protocol state.
#[derive(Debug)]
pub enum Session {
    /// No byte seen yet; what the listener allows.
    Detect(Protocol),
    Text(TextSession),
    Binary(BinarySession),
}

impl Session {
    /// A session for a connection of a listener that speaks `protocol`.
    pub fn new(protocol: Protocol) -> Self {
        Session::Detect(protocol)
    }

    /// Run the complete requests at the start of `input` (see
    /// `text::Session::process` for the meaning of the arguments).
    pub fn process(
        &mut self,
        ctx: &Ctx,
        input: &[u8],
        out: &mut Vec<u8>,
        budget: usize,
        out_limit: usize,
    ) -> Progress {
        if let Session::Detect(protocol) = *self {
            let Some(&first) = input.first() else {
                return Progress::idle();
            };
            let binary = match protocol {
                Protocol::Auto => first == REQUEST_MAGIC,
                Protocol::Binary => true,
                Protocol::Ascii => false,
            };
            *self = if binary {
                Session::Binary(BinarySession::new())
            } else {
                Session::Text(TextSession::new())
            };
        }
        match self {
            Session::Text(s) => s.process(ctx, input, out, budget, out_limit),
            Session::Binary(s) => s.process(ctx, input, out, budget, out_limit),
            Session::Detect(_) => unreachable!("decided above"),
        }
    }
}
