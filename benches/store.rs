//! Storage engine alone: get (hit and miss), set, delete, incr, and the
//! maintainer's idle pass, with no sockets or parsing in the way. Keys
//! are 32 bytes and values 100 bytes, the shape used for the RSS-per-item
//! target.
//!
//! `store` runs on one thread; `store_all_threads` runs the same
//! operations on every available core at once against one shared store,
//! which is what shows whether the shard locks let threads scale (the
//! reported throughput is the sum over threads). `STORE_BENCH_THREADS=1`
//! runs that group's harness on one thread, for the scaling ratio.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gannet::clock::Clock;
use gannet::store::{ArithArgs, DeleteArgs, Mode, Store, StoreArgs, StoreConfig};

const KEYS: u32 = 100_000;

fn key(i: u32) -> [u8; 32] {
    let mut k = *b"bench:00000000000000000000000000";
    let mut n = i;
    for b in k[6..].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

fn filled() -> Store {
    let s = Store::new(
        StoreConfig {
            mem_limit: 256 << 20,
            ..StoreConfig::default()
        },
        Clock::new(),
    );
    let v = [b'v'; 100];
    for i in 0..KEYS {
        s.store(&StoreArgs::new(Mode::Set, &key(i), 0, 0, &v));
    }
    s
}

fn bench(c: &mut Criterion) {
    let s = filled();
    let v = [b'w'; 100];
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u32;
    g.bench_function("get_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let k = key(i);
            black_box(s.get(&k, true, |r| {
                r.map(|it| it.value().map(|s| s.len()).sum::<usize>())
            }))
        })
    });
    g.bench_function("get_miss", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let k = key(i + KEYS);
            black_box(s.get(&k, true, |r| r.is_ok()))
        })
    });
    g.bench_function("set_overwrite", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let k = key(i);
            black_box(s.store(&StoreArgs::new(Mode::Set, &k, 0, 0, &v)))
        })
    });
    g.bench_function("incr", |b| {
        s.store(&StoreArgs::new(Mode::Set, b"counter", 0, 0, b"0"));
        b.iter(|| black_box(s.arith(&ArithArgs::new(b"counter", true, 1))))
    });
    g.bench_function("delete_then_set", |b| {
        b.iter_batched(
            || {
                i = (i + 7919) % KEYS;
                key(i)
            },
            |k| {
                black_box(s.delete(&DeleteArgs::new(&k)));
                black_box(s.store(&StoreArgs::new(Mode::Set, &k, 0, 0, &v)))
            },
            BatchSize::SmallInput,
        )
    });
    // The maintainer thread's once-a-second pass (tail reclaim sweeps and
    // juggles over every class of every shard) with nothing to do: its
    // fixed cost.
    g.bench_function("maintain_idle_pass", |b| b.iter(|| s.maintain()));
    g.finish();
}

/// `iters` operations on each of `threads` threads, started together;
/// the wall time until the last one finishes.
fn on_all_threads(threads: usize, iters: u64, op: impl Fn(usize, u64) + Sync) -> Duration {
    let start = Barrier::new(threads + 1);
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (start, op) = (&start, &op);
                sc.spawn(move || {
                    start.wait();
                    for n in 0..iters {
                        op(t, n);
                    }
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        for h in handles {
            h.join().expect("bench thread");
        }
        t0.elapsed()
    })
}

/// A key index for thread `t`'s `n`th operation: each thread walks the
/// key space from its own offset, so threads hit different shards.
fn spread(t: usize, n: u64) -> u32 {
    ((t as u64 * 40_503 + n * 7_919) % KEYS as u64) as u32
}

fn bench_threads(c: &mut Criterion) {
    let threads = std::env::var("STORE_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let s = filled();
    let v = [b'w'; 100];
    let mut g = c.benchmark_group("store_all_threads");
    g.throughput(Throughput::Elements(threads as u64));
    g.bench_function("get_hit", |b| {
        b.iter_custom(|iters| {
            on_all_threads(threads, iters, |t, n| {
                let k = key(spread(t, n));
                let _ = black_box(s.get(&k, true, |r| {
                    r.map(|it| it.value().map(|s| s.len()).sum::<usize>())
                }));
            })
        })
    });
    g.bench_function("set_overwrite", |b| {
        b.iter_custom(|iters| {
            on_all_threads(threads, iters, |t, n| {
                let k = key(spread(t, n));
                black_box(s.store(&StoreArgs::new(Mode::Set, &k, 0, 0, &v)));
            })
        })
    });
    g.bench_function("delete_then_set", |b| {
        b.iter_custom(|iters| {
            on_all_threads(threads, iters, |t, n| {
                let k = key(spread(t, n));
                black_box(s.delete(&DeleteArgs::new(&k)));
                black_box(s.store(&StoreArgs::new(Mode::Set, &k, 0, 0, &v)));
            })
        })
    });
    g.bench_function("get_set_90_10", |b| {
        b.iter_custom(|iters| {
            on_all_threads(threads, iters, |t, n| {
                let k = key(spread(t, n));
                if n % 10 == 0 {
                    black_box(s.store(&StoreArgs::new(Mode::Set, &k, 0, 0, &v)));
                } else {
                    black_box(s.get(&k, true, |r| r.is_ok()));
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench, bench_threads);
criterion_main!(benches);
