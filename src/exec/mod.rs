//! Command semantics: the only layer that knows both protocols and the store.
