//! Fuzz target for the text protocol framer and line parser.
//!
//! Arbitrary bytes are walked the way a connection walks its input buffer:
//! `frame` finds a line, `parse_line` parses it, a storage command's data
//! block is skipped, and the walk goes on with the rest. Every outcome is
//! checked against the contract exec relies on without re-checking:
//! nothing is consumed beyond the input, a line lies inside the input and
//! holds no newline, keys are 1..=250 bytes without a space, and an
//! over-long line is only refused past `LINE_MAX` (or past the multi-get
//! bound for a `get`). The first byte picks the multi-get bound so both
//! sides of it are reached by small inputs.
#![no_main]

use gannet::protocol::text::{frame, parse_line, Command, Frame, Tokens, KEY_MAX_LENGTH, LINE_MAX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(data));

/// Whether `part` lies inside `whole`.
fn within(whole: &[u8], part: &[u8]) -> bool {
    let start = whole.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    part.is_empty() || (p >= start && p + part.len() <= start + whole.len())
}

fn check_key(line: &[u8], key: &[u8]) {
    assert!(
        (1..=KEY_MAX_LENGTH).contains(&key.len()),
        "key of {} bytes accepted",
        key.len()
    );
    assert!(!key.contains(&b' '), "key with a space accepted");
    assert!(!key.contains(&b'\n'), "key with a newline accepted");
    assert!(within(line, key), "key does not borrow from the line");
}

fn check(data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    // The multi-get bound: below, at and well above LINE_MAX.
    let max_get_line = match selector % 4 {
        0 => LINE_MAX,
        1 => LINE_MAX + 1,
        2 => 4096,
        _ => 64 * 1024,
    };
    let mut rest = input;
    // Every round that continues consumes at least one byte, so this ends.
    loop {
        match frame(rest, max_get_line) {
            Frame::Incomplete => {
                assert!(
                    !rest.contains(&b'\n'),
                    "incomplete although a newline is there"
                );
                if rest.len() > LINE_MAX {
                    // Only a get may wait past LINE_MAX, and only up to its bound.
                    assert!(rest.len() <= max_get_line);
                    let trimmed: &[u8] = {
                        let sp = rest.iter().take_while(|&&b| b == b' ').count();
                        &rest[sp..]
                    };
                    assert!(trimmed.starts_with(b"get ") || trimmed.starts_with(b"gets "));
                }
                return;
            }
            Frame::TooLong => {
                assert!(
                    !rest.contains(&b'\n'),
                    "too long although a newline is there"
                );
                assert!(rest.len() > LINE_MAX, "refused a line within LINE_MAX");
                return;
            }
            Frame::Line { line, consumed } => {
                assert!(
                    consumed >= 1 && consumed <= rest.len(),
                    "consumed {consumed}"
                );
                assert_eq!(rest[consumed - 1], b'\n');
                assert!(line.len() < consumed);
                assert_eq!(line.as_ptr(), rest.as_ptr(), "line must start the input");
                assert!(!line.contains(&b'\n'), "line holds a newline");
                let mut skip = consumed;
                if let Ok(cmd) = parse_line(line) {
                    match cmd {
                        Command::Get { keys, .. } => {
                            assert!(within(line, keys));
                            for k in Tokens::new(keys) {
                                assert!(!k.is_empty() && !k.contains(&b' '));
                                assert!(within(line, k));
                            }
                        }
                        Command::Store { key, bytes, .. } => {
                            check_key(line, key);
                            // A connection waits for the data block and its
                            // line end; skip it when it is all there.
                            match consumed.checked_add(bytes).and_then(|n| n.checked_add(2)) {
                                Some(end) if end <= rest.len() => skip = end,
                                _ => return,
                            }
                        }
                        Command::Delete { key, .. }
                        | Command::Arith { key, .. }
                        | Command::Touch { key, .. } => check_key(line, key),
                        Command::Stats { args } => assert!(within(line, args)),
                        Command::Meta { line: l } => assert!(within(line, l)),
                        Command::Admin { name, args } => {
                            assert!(within(line, name) && within(line, args));
                        }
                        _ => {}
                    }
                }
                rest = &rest[skip..];
            }
        }
    }
}
