//! The binary protocol's meaning (placeholder until the binary issue's
//! command semantics land): every request is answered "Unknown command".

use crate::protocol::binary::{self as proto, Parsed, Status};

use super::text::Progress;
use super::{Action, Ctx};

/// Per-connection binary protocol state.
#[derive(Debug, Default)]
pub struct Session {}

impl Session {
    pub fn new() -> Self {
        Session::default()
    }

    pub fn process(
        &mut self,
        ctx: &Ctx,
        input: &[u8],
        out: &mut Vec<u8>,
        budget: usize,
        _out_limit: usize,
    ) -> Progress {
        let mut pos = 0;
        let mut requests = 0;
        while requests < budget {
            match proto::parse_request(&input[pos..], ctx.shared.settings.item_size_max) {
                Ok(Parsed::Complete { req, consumed }) => {
                    let _ = proto::write_error(
                        out,
                        req.opcode.as_u8(),
                        Status::UnknownCommand,
                        req.opaque,
                    );
                    pos += consumed;
                    requests += 1;
                }
                Ok(Parsed::Incomplete { need }) => {
                    return Progress {
                        consumed: pos,
                        requests,
                        action: Action::Continue,
                        need: pos + need,
                        more: false,
                    };
                }
                Err(e) => {
                    e.write_reply(out);
                    return Progress {
                        consumed: pos,
                        requests,
                        action: Action::Close,
                        need: 0,
                        more: false,
                    };
                }
            }
        }
        Progress {
            consumed: pos,
            requests,
            action: Action::Continue,
            need: 0,
            more: false,
        }
    }
}
