//! Counters and their `STAT` rendering.
