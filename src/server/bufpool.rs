//! Input buffers a worker keeps for the next connection that needs one.
//!
//! Why: a connection lets go of a large input buffer once it is empty, so
//! that idle connections hold little memory. Without a pool, every value
//! larger than one read would allocate and zero a fresh buffer of its
//! size, and the zeroing costs as much as copying the value once more.
//! Small buffers come here too, when a connection's buffer is replaced by
//! a larger one or the connection closes: a connection whose leftover
//! input alternates between a few KiB and a large value would otherwise
//! allocate a small buffer again after every large one, so the request
//! path would allocate once per such batch. The pool keeps a bounded
//! number of buffers per worker, bounded in bytes too, and hands them out
//! again already initialised.
//!
//! The pooled buffers are read buffers nobody uses: they are counted in
//! `read_buf_count`, `read_buf_bytes` and `read_buf_bytes_free`, as
//! memcached counts the read buffers its threads cache. Under
//! `read_buf_mem_limit` the pool is emptied before a connection is refused
//! a buffer (`Worker::over_read_buf_limit`).

use std::sync::Arc;

use crate::stats::ThreadStats;

/// Most bytes of spare buffers one worker keeps: room for a buffer of a
/// value of the default `-I 1m` (1 MiB and 4 KiB), or for nineteen of a
/// 100 KB value.
pub const POOL_BYTES: usize = 2 * 1024 * 1024;

/// Most spare buffers one worker keeps, so that `take`'s scan stays short
/// however small they are.
pub const POOL_BUFS: usize = 32;

/// One worker's spare input buffers.
pub struct BufPool {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
    limit: usize,
    stats: Arc<ThreadStats>,
}

impl BufPool {
    pub fn new(stats: Arc<ThreadStats>) -> BufPool {
        BufPool::with_limit(stats, POOL_BYTES)
    }

    pub fn with_limit(stats: Arc<ThreadStats>, limit: usize) -> BufPool {
        BufPool {
            bufs: Vec::with_capacity(POOL_BUFS),
            bytes: 0,
            limit,
            stats,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A buffer whose length is at least `min`: the smallest pooled one
    /// that fits and is at most four times `min` (a small request does not
    /// hold on to the buffer of a large one), else a new zeroed one of
    /// exactly `min` bytes.
    pub fn take(&mut self, min: usize) -> Vec<u8> {
        let best = (self.bufs.iter().enumerate())
            .filter(|(_, b)| b.len() >= min && b.len() / 4 <= min)
            .min_by_key(|(_, b)| b.len())
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let buf = self.bufs.swap_remove(i);
                self.bytes -= buf.len();
                self.stats.read_bufs.change((buf.len(), true), (0, true));
                buf
            }
            None => vec![0; min],
        }
    }

    /// Keep `buf` for a later `take` if the pool has room for it; drop it
    /// otherwise.
    pub fn give(&mut self, buf: Vec<u8>) {
        if buf.is_empty() || self.bufs.len() >= POOL_BUFS || self.bytes + buf.len() > self.limit {
            return;
        }
        self.bytes += buf.len();
        self.stats.read_bufs.change((0, true), (buf.len(), true));
        self.bufs.push(buf);
    }

    /// Free every pooled buffer.
    pub fn clear(&mut self) {
        for buf in self.bufs.drain(..) {
            self.stats.read_bufs.change((buf.len(), true), (0, true));
        }
        self.bytes = 0;
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(limit: usize) -> (BufPool, Arc<ThreadStats>) {
        let stats = Arc::new(ThreadStats::default());
        (BufPool::with_limit(Arc::clone(&stats), limit), stats)
    }

    #[test]
    fn take_prefers_the_smallest_buffer_that_fits() {
        let (mut p, _) = pool(1 << 20);
        p.give(vec![1; 4096]);
        p.give(vec![2; 65536]);
        p.give(vec![3; 16384]);
        let b = p.take(10_000);
        assert_eq!((b.len(), b[0]), (16384, 3));
        // The 64 KiB buffer is more than four times too large for 10,000.
        let b = p.take(10_000);
        assert_eq!((b.len(), b[0]), (10_000, 0));
        assert_eq!(p.bytes(), 4096 + 65536);
        // Nothing fits: a new zeroed buffer of exactly the size asked.
        let b = p.take(100_000);
        assert_eq!(b.len(), 100_000);
        assert!(b.iter().all(|&x| x == 0));
        assert_eq!(p.bytes(), 4096 + 65536);
        let b = p.take(65536);
        assert_eq!((b.len(), b[0], p.bytes()), (65536, 2, 4096));
    }

    #[test]
    fn give_keeps_at_most_the_limit() {
        let (mut p, _) = pool(100_000);
        p.give(vec![0; 60_000]);
        p.give(vec![0; 60_000]); // would pass the limit: dropped
        assert_eq!(p.bytes(), 60_000);
        p.give(vec![0; 40_000]);
        assert_eq!(p.bytes(), 100_000);
        p.give(Vec::new());
        assert_eq!(p.bufs.len(), 2);
    }

    #[test]
    fn give_keeps_at_most_pool_bufs_buffers() {
        let (mut p, _) = pool(1 << 20);
        for _ in 0..POOL_BUFS + 3 {
            p.give(vec![0; 100]);
        }
        assert_eq!((p.bufs.len(), p.bytes()), (POOL_BUFS, POOL_BUFS * 100));
        // A small request takes a small pooled buffer too.
        assert_eq!(p.take(30).len(), 100);
        assert_eq!(p.bufs.len(), POOL_BUFS - 1);
    }

    #[test]
    fn pooled_buffers_count_as_free_read_buffers() {
        let (mut p, stats) = pool(1 << 20);
        p.give(vec![0; 1000]);
        p.give(vec![0; 3000]);
        assert_eq!(stats.read_bufs.get(), (2, 4000, 4000));
        let b = p.take(2000);
        assert_eq!(b.len(), 3000);
        assert_eq!(stats.read_bufs.get(), (1, 1000, 1000));
        p.clear();
        assert_eq!((stats.read_bufs.get(), p.bytes()), ((0, 0, 0), 0));
        p.give(b);
        drop(p);
        assert_eq!(stats.read_bufs.get(), (0, 0, 0));
    }
}
