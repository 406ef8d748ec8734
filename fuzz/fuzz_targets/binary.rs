//! Fuzz target for the binary protocol parser.
//!
//! Arbitrary bytes are parsed the way a connection would (packet after
//! packet, skipping where an error says to), and every outcome is checked
//! against the parser's contract: borrowed slices lie inside the input and
//! add up to the body length, keys stay within 250 bytes, an incomplete
//! answer always asks for more than it has, faults are decided exactly when
//! documented, and error replies are well-formed packets. The first input
//! byte picks the item size limit so the oversized-value paths are reached
//! by small inputs. The datagram parser must agree wherever a request's
//! head fits the stream read buffer.
#![no_main]

use gannet::protocol::binary::{
    parse_datagram_request, parse_request, BinError, ErrorAction, Header, Parsed, HEADER_LEN,
    KEY_MAX_LEN, READ_BUFFER, RESPONSE_MAGIC,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let limit = match selector % 4 {
        0 => 0,
        1 => 16,
        2 => 1024,
        _ => 1 << 20,
    };
    let mut rest = input;
    // Every round that continues drops at least one header, so this ends.
    loop {
        let parsed = parse_request(rest, limit);
        // A datagram differs only where the head is longer than the
        // stream read buffer.
        let head_fits = match rest.first_chunk::<HEADER_LEN>().map(Header::decode) {
            Some(h) => {
                HEADER_LEN + usize::from(h.extras_len) + usize::from(h.key_len) <= READ_BUFFER
            }
            None => true,
        };
        if head_fits {
            assert_eq!(parse_datagram_request(rest, limit), parsed);
        }
        match parsed {
            Ok(Parsed::Incomplete { need }) => {
                assert!(need > rest.len(), "incomplete must ask for more");
                return;
            }
            Ok(Parsed::Complete { req, consumed }) => {
                assert!(consumed >= HEADER_LEN && consumed <= rest.len());
                assert!(req.key.len() <= KEY_MAX_LEN);
                assert!(req.value.len() <= limit);
                let body = req.extras.len() + req.key.len() + req.value.len();
                assert_eq!(HEADER_LEN + body, consumed);
                if let Some(head) = rest.first_chunk::<HEADER_LEN>() {
                    let h = Header::decode(head);
                    assert_eq!(h.body_len as usize, body);
                    assert_eq!(usize::from(h.key_len), req.key.len());
                    assert_eq!(usize::from(h.extras_len), req.extras.len());
                    assert_eq!(h.opaque, req.opaque);
                }
                // The slices are the packet's own bytes, in order.
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
                // Any shorter prefix is incomplete, never a different answer.
                for cut in [0, 1, HEADER_LEN - 1, HEADER_LEN, consumed - 1] {
                    if cut < consumed {
                        assert!(matches!(
                            parse_request(&rest[..cut], limit),
                            Ok(Parsed::Incomplete { .. })
                        ));
                    }
                }
                rest = &rest[consumed..];
            }
            Err(err) => {
                // Faults are decided as soon as memcached decides them: a
                // bad magic on the header, a head too big for memcached's
                // read buffer once that is full, the rest once extras and
                // key are in.
                let head = rest.first_chunk::<HEADER_LEN>().map(Header::decode);
                let head = head.expect("a fault needs a header");
                let key_end = HEADER_LEN + usize::from(head.extras_len) + usize::from(head.key_len);
                let decided_at = match err {
                    BinError::BadMagic { .. } => HEADER_LEN,
                    BinError::HeadOverflow { .. } => {
                        assert!(key_end > READ_BUFFER);
                        READ_BUFFER
                    }
                    BinError::ValueTooLarge { key, .. } => {
                        assert_eq!(
                            key.as_ptr() as usize,
                            rest.as_ptr() as usize + key_end - key.len()
                        );
                        key_end
                    }
                    _ => key_end,
                };
                assert!(decided_at <= rest.len());
                assert_eq!(parse_request(&rest[..decided_at], limit), Err(err));
                assert!(matches!(
                    parse_request(&rest[..decided_at - 1], limit),
                    Ok(Parsed::Incomplete { .. })
                ));

                let mut out = Vec::new();
                let wrote = err.write_reply(&mut out);
                assert_eq!(wrote, err.action() != ErrorAction::Close);
                if wrote {
                    let reply = out.first_chunk::<HEADER_LEN>().map(Header::decode);
                    let reply = reply.expect("a reply has a header");
                    assert_eq!(reply.magic, RESPONSE_MAGIC);
                    assert_eq!(reply.body_len as usize, out.len() - HEADER_LEN);
                    assert_eq!(reply.opaque, err.opaque());
                    assert_eq!(Some(reply.opcode), err.opcode_byte());
                    assert_eq!(reply.cas, 0);
                }
                match err.action() {
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
