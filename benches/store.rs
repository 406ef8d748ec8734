//! Storage engine alone: get (hit and miss), set, delete, incr, with no
//! sockets or parsing in the way. Keys are 32 bytes and values 100 bytes,
//! the shape used for the RSS-per-item target.

use std::hint::black_box;

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
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
