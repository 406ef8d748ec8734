//! Fuzzes the meta-protocol line parser: memcached's meta parser once
//! crashed on crafted flags (CVE-2020-22570), so ours must take any bytes
//! and either refuse them with an error or hand back a request whose
//! borrowed pieces obey the limits exec relies on without re-checking.
#![no_main]

use gannet::protocol::meta::{
    decode_key, parse_meta, rejected_data_len, MetaCommand, DATA_LEN_MAX, DECODED_KEY_MAX, KEY_MAX,
    OPAQUE_TOKEN_MAX,
};
use libfuzzer_sys::fuzz_target;

/// Whether `part` lies inside `whole` (tokens must borrow from the line).
fn within(whole: &[u8], part: &[u8]) -> bool {
    let start = whole.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    part.is_empty() || (p >= start && p + part.len() <= start + whole.len())
}

fuzz_target!(|line: &[u8]| {
    let parsed = parse_meta(line);
    let swallow = rejected_data_len(line);
    let req = match parsed {
        Ok(req) => req,
        Err(_) => {
            assert!(swallow.is_none_or(|n| n <= DATA_LEN_MAX));
            return;
        }
    };
    assert_eq!(swallow, None);
    assert!(within(line, req.key));
    assert!(!req.key.contains(&b' ') && !req.key.contains(&0));
    if req.command == MetaCommand::Noop {
        assert!(req.key.is_empty());
    } else {
        assert!((1..=KEY_MAX).contains(&req.key.len()));
    }
    if !line.contains(&b'\r') && !line.contains(&b'\n') {
        assert!(!req.key.contains(&b'\r') && !req.key.contains(&b'\n'));
    }
    let mut buf = [0u8; DECODED_KEY_MAX];
    if req.is_base64() {
        let decoded = decode_key(req.key, &mut buf).expect("parser accepted an undecodable key");
        assert!((1..=DECODED_KEY_MAX).contains(&decoded.len()));
    }
    let stored = req.key_bytes(&mut buf).len();
    assert!((req.command == MetaCommand::Noop || stored >= 1) && stored <= KEY_MAX);
    if let Some(opaque) = req.opaque {
        assert!(opaque.len() < OPAQUE_TOKEN_MAX);
        assert!(within(line, opaque));
    }
    assert!(req.data_len <= DATA_LEN_MAX);
    if req.command != MetaCommand::Set {
        assert_eq!(req.data_len, 0);
    }
    for (letter, token) in req.flag_tokens() {
        assert!(within(line, token));
        assert_eq!(token.first(), Some(&letter));
        assert!(!token.contains(&b' '));
    }
});
