//! Meta commands (`mg ms md ma mn me`): their memcached 1.6 meaning.

use crate::protocol::meta::{self as proto, MetaCommand, MetaRequest, MetaStatus};

use super::{Action, Ctx};

/// For `ms`, before its data block is read: `Err(n)` when a reply was
/// written and `n` input bytes (the block) must be discarded.
pub fn ms_precheck(ctx: &Ctx, req: &MetaRequest, out: &mut Vec<u8>) -> Result<(), usize> {
    let _ = (ctx, req, out);
    Ok(())
}

/// Run one meta command. `data` is the `ms` data block with its line end.
pub fn run(ctx: &Ctx, req: &MetaRequest, data: Option<&[u8]>, out: &mut Vec<u8>) -> Action {
    let _ = (ctx, data);
    match req.command {
        MetaCommand::Noop => {
            proto::write_status(out, MetaStatus::Mn);
            proto::end_line(out);
        }
        _ => out.extend_from_slice(b"SERVER_ERROR meta command not available\r\n"),
    }
    Action::Continue
}
