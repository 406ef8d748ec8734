//! What observability costs a request: the latency bookkeeping (per
//! request and per batch), a hot-key sample, and a watch hook with nobody
//! watching. Compare with the server's per-request CPU (several
//! microseconds, see docs/reference benchmarking notes): the sum here must
//! stay a small fraction of it.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gannet::exec::watch;
use gannet::hotkeys::Table;
use gannet::latency::{self, Family, Latency};

fn latency_costs(c: &mut Criterion) {
    let mut g = c.benchmark_group("latency");
    g.throughput(Throughput::Elements(1));
    let l = Latency::default();
    g.bench_function("note (per request)", |b| {
        b.iter(|| l.note(black_box(Family::Get)))
    });
    g.bench_function("batch of 1: start + note + finish", |b| {
        b.iter(|| {
            let t0 = latency::start();
            l.note(black_box(Family::Get));
            latency::finish(&l, black_box(t0));
        })
    });
    g.throughput(Throughput::Elements(16));
    g.bench_function("batch of 16 (per batch)", |b| {
        b.iter(|| {
            let t0 = latency::start();
            for _ in 0..16 {
                l.note(black_box(Family::Get));
            }
            latency::finish(&l, black_box(t0));
        })
    });
    g.finish();
}

fn hotkey_costs(c: &mut Criterion) {
    let mut g = c.benchmark_group("hotkeys");
    g.throughput(Throughput::Elements(1));
    let t = Table::default();
    let keys: Vec<Vec<u8>> = (0..1024)
        .map(|i| format!("bench:{i:026}").into_bytes())
        .collect();
    let mut i = 0usize;
    g.bench_function("sample (1 in SAMPLE counted)", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            t.sample(black_box(&keys[i]), 100);
        })
    });
    g.bench_function("count (every call)", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            t.count(black_box(&keys[i]), 100);
        })
    });
    g.finish();
}

fn watch_costs(c: &mut Criterion) {
    let mut g = c.benchmark_group("watch");
    g.throughput(Throughput::Elements(1));
    g.bench_function("item_get hook, no watcher", |b| {
        b.iter(|| watch::item_get(black_box(b"bench:key"), watch::found(1, 100)))
    });
    g.finish();
}

criterion_group!(benches, latency_costs, hotkey_costs, watch_costs);
criterion_main!(benches);
