//! Wire formats: pure parsers and encoders over byte slices.
//!
//! Nothing here knows about sockets, threads or the store, and nothing here
//! allocates per request: parsers borrow from the input buffer and report
//! how many bytes they consumed, encoders append to a caller's `Vec<u8>`.
//! That keeps every parser fuzzable on arbitrary bytes.

pub mod binary;
pub mod meta;
pub mod number;
pub mod text;
