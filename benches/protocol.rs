//! Parser cost per request, for the three wire protocols.
//!
//! Why: on a 2-core machine end-to-end throughput is noisy and often
//! bounded by the client, so the per-request cost of framing and parsing
//! is measured alone here (ns/request; criterion reports elements/s with
//! `Throughput::Elements(1)`). Each bench does what a connection does for
//! one request: find the frame in the read buffer, then parse it. Inputs
//! are the shapes of the comparison workload: 32-byte keys, 100-byte
//! values, a 100-key multi-get.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gannet::protocol::{binary, meta, text};

/// The item size limit the daemon uses by default (memcached's `-I 1m`).
const ITEM_MAX: usize = 1024 * 1024;

fn key(i: usize) -> Vec<u8> {
    format!("bench:{i:026}").into_bytes()
}

/// Frame one text line and parse it, as a connection does.
fn text_request(buf: &[u8]) -> usize {
    match text::frame(buf, 64 * 1024) {
        text::Frame::Line { line, consumed } => match text::parse_line(line) {
            Ok(cmd) => consumed + usize::from(matches!(cmd, text::Command::Get { .. })),
            Err(_) => 0,
        },
        _ => 0,
    }
}

fn bench_text(c: &mut Criterion) {
    let mut g = c.benchmark_group("text");
    g.throughput(Throughput::Elements(1));

    let mut get = b"get ".to_vec();
    get.extend_from_slice(&key(1));
    get.extend_from_slice(b"\r\n");
    g.bench_function("get", |b| b.iter(|| text_request(black_box(&get))));

    // The data block is skipped by length, not parsed: only the line counts.
    let mut set = b"set ".to_vec();
    set.extend_from_slice(&key(1));
    set.extend_from_slice(b" 0 0 100\r\n");
    set.extend_from_slice(&[b'v'; 100]);
    set.extend_from_slice(b"\r\n");
    g.bench_function("set", |b| b.iter(|| text_request(black_box(&set))));

    // A multi-get also walks its keys, as exec does.
    let mut multi = b"get".to_vec();
    for i in 0..100 {
        multi.push(b' ');
        multi.extend_from_slice(&key(i));
    }
    multi.extend_from_slice(b"\r\n");
    g.bench_function("get_100_keys", |b| {
        b.iter(|| match text::frame(black_box(&multi), 64 * 1024) {
            text::Frame::Line { line, .. } => match text::parse_line(line) {
                Ok(text::Command::Get { keys, .. }) => text::Tokens::new(keys).count(),
                _ => 0,
            },
            _ => 0,
        })
    });
    g.finish();
}

fn bench_meta(c: &mut Criterion) {
    let mut g = c.benchmark_group("meta");
    g.throughput(Throughput::Elements(1));

    let mut mg = b"mg ".to_vec();
    mg.extend_from_slice(&key(1));
    mg.extend_from_slice(b" v f t c k s Oabcdef q\r\n");
    g.bench_function("mg_with_flags", |b| {
        b.iter(|| match text::frame(black_box(&mg), 64 * 1024) {
            text::Frame::Line { line, .. } => match meta::parse_meta(line) {
                Ok(r) => r.key.len() + usize::from(r.is_quiet()),
                Err(_) => 0,
            },
            _ => 0,
        })
    });

    let mut ms = b"ms ".to_vec();
    ms.extend_from_slice(&key(1));
    ms.extend_from_slice(b" 100 T0 F5\r\n");
    ms.extend_from_slice(&[b'v'; 100]);
    ms.extend_from_slice(b"\r\n");
    g.bench_function("ms", |b| {
        b.iter(|| match text::frame(black_box(&ms), 64 * 1024) {
            text::Frame::Line { line, .. } => match meta::parse_meta(line) {
                Ok(r) => r.data_len as usize,
                Err(_) => 0,
            },
            _ => 0,
        })
    });
    g.finish();
}

fn bench_binary(c: &mut Criterion) {
    let mut g = c.benchmark_group("binary");
    g.throughput(Throughput::Elements(1));

    let mut get = Vec::new();
    binary::write_request(
        &mut get,
        binary::Opcode::Get.as_u8(),
        7,
        0,
        &[],
        &key(1),
        &[],
    )
    .expect("encode GET");
    g.bench_function("get", |b| {
        b.iter(|| match binary::parse_request(black_box(&get), ITEM_MAX) {
            Ok(binary::Parsed::Complete { consumed, .. }) => consumed,
            _ => 0,
        })
    });

    let mut set = Vec::new();
    let extras = [0u8; 8]; // flags, exptime
    binary::write_request(
        &mut set,
        binary::Opcode::Set.as_u8(),
        7,
        0,
        &extras,
        &key(1),
        &[b'v'; 100],
    )
    .expect("encode SET");
    g.bench_function("set", |b| {
        b.iter(|| match binary::parse_request(black_box(&set), ITEM_MAX) {
            Ok(binary::Parsed::Complete { consumed, .. }) => consumed,
            _ => 0,
        })
    });

    // A binary "multi-get": 100 GETKQ packets and a NOOP, parsed in turn.
    let mut multi = Vec::new();
    for i in 0..100 {
        binary::write_request(
            &mut multi,
            binary::Opcode::GetKQ.as_u8(),
            i,
            0,
            &[],
            &key(i as usize),
            &[],
        )
        .expect("encode GETKQ");
    }
    binary::write_request(
        &mut multi,
        binary::Opcode::Noop.as_u8(),
        0,
        0,
        &[],
        &[],
        &[],
    )
    .expect("encode NOOP");
    g.bench_function("getkq_100_keys", |b| {
        b.iter(|| {
            let mut buf = black_box(&multi[..]);
            let mut n = 0;
            while let Ok(binary::Parsed::Complete { consumed, .. }) =
                binary::parse_request(buf, ITEM_MAX)
            {
                buf = &buf[consumed..];
                n += 1;
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench_text, bench_meta, bench_binary);
criterion_main!(benches);
