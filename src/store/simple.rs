//! Placeholder engine (being written).
pub struct Store;
