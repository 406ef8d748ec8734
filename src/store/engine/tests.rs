use super::*;
use std::collections::HashMap;

fn cfg(mb: usize) -> StoreConfig {
    StoreConfig {
        mem_limit: mb << 20,
        ..StoreConfig::default()
    }
}

fn store(mb: usize) -> (Store, Arc<Clock>) {
    let clock = Clock::new();
    (Store::new(cfg(mb), clock.clone()), clock)
}

fn set(s: &Store, k: &[u8], v: &[u8]) -> StoreOutcome {
    s.store(&StoreArgs::new(Mode::Set, k, 0, 0, v))
}

fn get(s: &Store, k: &[u8]) -> Result<Vec<u8>, Miss> {
    s.get(k, true, |r| {
        r.map(|it| it.value().flatten().copied().collect())
    })
}

/// A one-byte value that expires at `exp` (0: never).
fn set_until(s: &Store, k: &str, exp: RelTime) -> StoreOutcome {
    s.store(&StoreArgs::new(Mode::Set, k.as_bytes(), 0, exp, b"v"))
}

fn getcas(s: &Store, k: &[u8]) -> u64 {
    s.get(k, false, |r| r.map(|it| it.cas()).unwrap_or(0))
}

#[test]
fn set_get_delete() {
    let (s, _) = store(8);
    assert_eq!(get(&s, b"a"), Err(Miss::NotFound));
    let o = set(&s, b"a", b"hello");
    assert_eq!(o.status, StoreStatus::Stored);
    assert!(o.cas > 0);
    assert!(o.class > 0);
    assert_eq!(get(&s, b"a").unwrap(), b"hello");
    assert_eq!(set(&s, b"a", b"world!").status, StoreStatus::Stored);
    assert_eq!(get(&s, b"a").unwrap(), b"world!");
    assert_eq!(
        s.delete(&DeleteArgs::new(b"a")).status,
        DeleteStatus::Deleted
    );
    assert_eq!(
        s.delete(&DeleteArgs::new(b"a")).status,
        DeleteStatus::NotFound
    );
    assert_eq!(get(&s, b"a"), Err(Miss::NotFound));
    assert_eq!(s.stats().curr_items, 0);
}

#[test]
fn empty_value_and_item_fields() {
    let (s, clock) = store(8);
    let a = StoreArgs::new(Mode::Set, b"k", 42, clock.now() + 100, b"");
    assert_eq!(s.store(&a).status, StoreStatus::Stored);
    s.get(b"k", false, |r| {
        let it = r.unwrap();
        assert_eq!(it.key(), b"k");
        assert_eq!(it.flags(), 42);
        assert_eq!(it.value_len(), 0);
        assert_eq!(it.value().count(), 0);
        assert_eq!(it.exptime(), clock.now() + 100);
        assert!(!it.fetched());
    });
    assert_eq!(get(&s, b"k").unwrap(), b"");
    s.get(b"k", true, |r| assert!(r.unwrap().fetched()));
}

#[test]
fn add_replace_modes() {
    let (s, _) = store(8);
    let add = |v: &[u8]| s.store(&StoreArgs::new(Mode::Add, b"k", 0, 0, v)).status;
    let rep = |v: &[u8]| {
        s.store(&StoreArgs::new(Mode::Replace, b"k", 0, 0, v))
            .status
    };
    assert_eq!(rep(b"x"), StoreStatus::NotStored);
    assert_eq!(add(b"1"), StoreStatus::Stored);
    assert_eq!(add(b"2"), StoreStatus::NotStored);
    assert_eq!(get(&s, b"k").unwrap(), b"1");
    assert_eq!(rep(b"3"), StoreStatus::Stored);
    assert_eq!(get(&s, b"k").unwrap(), b"3");
}

#[test]
fn append_prepend_keep_flags_and_exptime() {
    let (s, clock) = store(8);
    let exp = clock.now() + 500;
    s.store(&StoreArgs::new(Mode::Set, b"k", 7, exp, b"mid"));
    let ap = s.store(&StoreArgs::new(Mode::Append, b"k", 99, 0, b"-end"));
    assert_eq!(ap.status, StoreStatus::Stored);
    let pp = s.store(&StoreArgs::new(Mode::Prepend, b"k", 99, 0, b"start-"));
    assert_eq!(pp.status, StoreStatus::Stored);
    assert_ne!(ap.cas, pp.cas);
    s.get(b"k", false, |r| {
        let it = r.unwrap();
        assert_eq!(it.flags(), 7);
        assert_eq!(it.exptime(), exp);
        assert_eq!(
            it.value().flatten().copied().collect::<Vec<u8>>(),
            b"start-mid-end"
        );
    });
    let miss = s.store(&StoreArgs::new(Mode::Append, b"nope", 0, 0, b"x"));
    assert_eq!(miss.status, StoreStatus::NotStored);
    // Autovivify.
    let mut v = StoreArgs::new(Mode::Append, b"viv", 0, 0, b"abc");
    v.vivify = Some(clock.now() + 10);
    assert_eq!(s.store(&v).status, StoreStatus::Stored);
    assert_eq!(get(&s, b"viv").unwrap(), b"abc");
}

#[test]
fn cas_checks_for_every_mode() {
    let (s, _) = store(8);
    let mut a = StoreArgs::new(Mode::Set, b"k", 0, 0, b"v1");
    a.cas = 5;
    assert_eq!(s.store(&a).status, StoreStatus::NotFound);
    let c1 = set(&s, b"k", b"v1").cas;
    a.cas = c1 + 1000;
    let o = s.store(&a);
    assert_eq!(o.status, StoreStatus::Exists);
    a.cas = c1;
    let o = s.store(&a);
    assert_eq!(o.status, StoreStatus::Stored);
    assert!(o.cas > c1);
    // Append to a missing item is NOT_STORED even with a CAS.
    let mut ap = StoreArgs::new(Mode::Append, b"missing", 0, 0, b"x");
    ap.cas = 7;
    assert_eq!(s.store(&ap).status, StoreStatus::NotStored);
    // Append with a stale cas.
    let mut ap = StoreArgs::new(Mode::Append, b"k", 0, 0, b"x");
    ap.cas = c1;
    assert_eq!(s.store(&ap).status, StoreStatus::Exists);
    ap.cas = o.cas;
    assert_eq!(s.store(&ap).status, StoreStatus::Stored);
    // Invalidate: older cas stores, marked stale.
    let cur = getcas(&s, b"k");
    let mut inv = StoreArgs::new(Mode::Set, b"k", 0, 0, b"old");
    inv.cas = cur - 1;
    inv.invalidate = true;
    assert_eq!(s.store(&inv).status, StoreStatus::Stored);
    s.get(b"k", false, |r| assert!(r.unwrap().stale()));
    // A newer (larger) cas is still a mismatch.
    inv.cas = getcas(&s, b"k") + 10;
    assert_eq!(s.store(&inv).status, StoreStatus::Exists);
    // Explicit cas (meta E).
    let mut e = StoreArgs::new(Mode::Set, b"e", 0, 0, b"v");
    e.set_cas = 123456;
    assert_eq!(s.store(&e).cas, 123456);
    assert_eq!(getcas(&s, b"e"), 123456);
}

#[test]
fn no_cas_mode_reports_zero() {
    let clock = Clock::new();
    let s = Store::new(
        StoreConfig {
            use_cas: false,
            ..cfg(8)
        },
        clock,
    );
    assert_eq!(set(&s, b"k", b"1").cas, 0);
    assert_eq!(getcas(&s, b"k"), 0);
    // memcached -C: a CAS store finds nothing to match...
    let mut c = StoreArgs::new(Mode::Set, b"k", 0, 0, b"2");
    c.cas = 5;
    assert_eq!(s.store(&c).status, StoreStatus::Exists);
    // ...while append/prepend ignore the CAS.
    let mut ap = StoreArgs::new(Mode::Append, b"k", 0, 0, b"0");
    ap.cas = 5;
    assert_eq!(s.store(&ap).status, StoreStatus::Stored);
    assert_eq!(get(&s, b"k").unwrap(), b"10");
    assert_eq!(
        s.delete(&DeleteArgs {
            cas: 5,
            ..DeleteArgs::new(b"k")
        })
        .status,
        DeleteStatus::Exists
    );
    let o = s.arith(&ArithArgs::new(b"k", true, 1));
    assert_eq!((o.status, o.value, o.cas), (ArithStatus::Ok, 11, 0));
}

#[test]
fn too_large_removes_old() {
    let (s, _) = store(8);
    set(&s, b"k", b"small");
    let big = vec![b'x'; 1024 * 1024];
    assert_eq!(set(&s, b"k", &big).status, StoreStatus::TooLarge);
    assert_eq!(get(&s, b"k"), Err(Miss::NotFound));
    // The limit counts memcached's item size: 48 + 8 + key + 1 + value + 2.
    let fits = vec![b'x'; 1024 * 1024 - 48 - 8 - 1 - 1 - 2];
    assert_eq!(set(&s, b"k", &fits).status, StoreStatus::Stored);
    let over = vec![b'x'; fits.len() + 1];
    assert_eq!(set(&s, b"k", &over).status, StoreStatus::TooLarge);
    // Nonzero flags take 4 more bytes.
    let flagged = StoreArgs::new(Mode::Set, b"k", 1, 0, &fits);
    assert_eq!(s.store(&flagged).status, StoreStatus::TooLarge);
    // Append past the limit is refused and keeps the old value.
    set(&s, b"a", &fits[..1000]);
    let ap = s.store(&StoreArgs::new(Mode::Append, b"a", 0, 0, &fits));
    assert_eq!(ap.status, StoreStatus::NotStored);
    assert_eq!(get(&s, b"a").unwrap().len(), 1000);
}

#[test]
fn chained_items_roundtrip() {
    let (s, _) = store(16);
    let big: Vec<u8> = (0..900_000u32).map(|i| (i * 7 % 256) as u8).collect();
    assert_eq!(set(&s, b"big", &big).status, StoreStatus::Stored);
    let got = s.get(b"big", false, |r| {
        let it = r.unwrap();
        assert!(it.value().count() >= 2);
        it.value().flatten().copied().collect::<Vec<u8>>()
    });
    assert_eq!(got, big);
    let ap = s.store(&StoreArgs::new(Mode::Append, b"big", 0, 0, b"tail"));
    assert_eq!(ap.status, StoreStatus::Stored);
    let got = get(&s, b"big").unwrap();
    assert_eq!(got.len(), big.len() + 4);
    assert_eq!(&got[big.len()..], b"tail");
    assert_eq!(
        s.arith(&ArithArgs::new(b"big", true, 1)).status,
        ArithStatus::NonNumeric
    );
    assert_eq!(
        s.delete(&DeleteArgs::new(b"big")).status,
        DeleteStatus::Deleted
    );
}

#[test]
fn parse_number_matches_safe_strtoull() {
    assert_eq!(parse_number(b"10"), Some(10));
    assert_eq!(parse_number(b"  12"), Some(12));
    assert_eq!(parse_number(b"12 a"), Some(12));
    assert_eq!(parse_number(b"+5 "), Some(5));
    assert_eq!(parse_number(b"\t5\r"), Some(5));
    assert_eq!(parse_number(b"-0"), Some(0));
    assert_eq!(parse_number(b"18446744073709551615"), Some(u64::MAX));
    assert_eq!(parse_number(b"000000000000000000000000001"), Some(1));
    assert_eq!(parse_number(b"18446744073709551616"), None);
    assert_eq!(parse_number(b" -3 "), None);
    assert_eq!(parse_number(b" 12ab"), None);
    assert_eq!(parse_number(b"abc"), None);
    assert_eq!(parse_number(b"   "), None);
    assert_eq!(parse_number(b""), None);
}

#[test]
fn arith_semantics_match_memcached() {
    let (s, clock) = store(8);
    let ar = |k: &[u8], incr, d| s.arith(&ArithArgs::new(k, incr, d));
    assert_eq!(ar(b"n", true, 1).status, ArithStatus::NotFound);
    set(&s, b"n", b"10");
    let o = ar(b"n", false, 1);
    assert_eq!((o.status, o.value), (ArithStatus::Ok, 9));
    // Shorter number: rewritten in place, padded with a space.
    assert_eq!(get(&s, b"n").unwrap(), b"9 ");
    assert_eq!(ar(b"n", false, 100).value, 0);
    assert_eq!(get(&s, b"n").unwrap(), b"0 ");
    // Longer number: a new item of the exact length.
    assert_eq!(ar(b"n", true, 12345).value, 12345);
    assert_eq!(get(&s, b"n").unwrap(), b"12345");
    set(&s, b"w", b"18446744073709551615");
    assert_eq!(ar(b"w", true, 2).value, 1);
    assert_eq!(get(&s, b"w").unwrap(), b"1                   ");
    // A long value with a number first is rewritten in full.
    set(&s, b"long", b"4                   79mq7g");
    assert_eq!(ar(b"long", false, 1).value, 3);
    assert_eq!(get(&s, b"long").unwrap(), b"3                         ");
    set(&s, b"bad", b"12ab");
    assert_eq!(ar(b"bad", true, 1).status, ArithStatus::NonNumeric);
    set(&s, b"e", b"");
    assert_eq!(ar(b"e", true, 1).status, ArithStatus::NonNumeric);
    // Empty is reported before a CAS mismatch (memcached's order).
    let mut ec = ArithArgs::new(b"e", true, 1);
    ec.cas = 99_999;
    assert_eq!(s.arith(&ec).status, ArithStatus::NonNumeric);
    // CAS check and fresh CAS per op.
    let c = getcas(&s, b"n");
    let mut a = ArithArgs::new(b"n", true, 1);
    a.cas = c + 1;
    assert_eq!(s.arith(&a).status, ArithStatus::Exists);
    a.cas = c;
    let o = s.arith(&a);
    assert_eq!(o.status, ArithStatus::Ok);
    assert!(o.cas > c);
    // Create on miss.
    let mut cr = ArithArgs::new(b"new", true, 5);
    cr.create = Some((42, clock.now() + 100));
    let o = s.arith(&cr);
    assert_eq!((o.status, o.value), (ArithStatus::Created, 42));
    assert_eq!(get(&s, b"new").unwrap(), b"42");
    // Exptime update.
    let mut t = ArithArgs::new(b"new", true, 1);
    t.exptime = Some(clock.now() + 7);
    assert_eq!(s.arith(&t).exptime, clock.now() + 7);
    // In place the item stays the same item and keeps its fetched bit
    // (meta `h1`); a longer result is a fresh item nobody fetched.
    let fetched = |k: &[u8]| s.get(k, false, |r| r.map(|it| it.fetched()).unwrap());
    set(&s, b"f", b"7");
    assert!(!fetched(b"f"));
    assert!(get(&s, b"f").is_ok());
    assert_eq!(ar(b"f", true, 1).value, 8);
    assert!(fetched(b"f"), "in-place incr lost the fetched bit");
    assert_eq!(ar(b"f", true, 10).value, 18);
    assert!(!fetched(b"f"), "a longer number is a new item");
}

#[test]
fn arith_exptime_sticks_only_in_place() {
    let (s, clock) = store(8);
    let exp = |k: &[u8]| s.get(k, false, |r| r.map(|it| it.exptime()).unwrap());
    set(&s, b"n", b"7");
    // 12 is longer: a new item, which keeps the old exptime (none).
    let mut a = ArithArgs::new(b"n", true, 5);
    a.exptime = Some(clock.now() + 60);
    let o = s.arith(&a);
    assert_eq!((o.value, o.exptime, o.prev_exptime), (12, 0, 0));
    assert_eq!(exp(b"n"), 0);
    // 13 fits: rewritten in place, and the exptime is set.
    let mut a = ArithArgs::new(b"n", true, 1);
    a.exptime = Some(clock.now() + 60);
    let o = s.arith(&a);
    assert_eq!(
        (o.value, o.exptime, o.prev_exptime),
        (13, clock.now() + 60, 0)
    );
    assert_eq!(exp(b"n"), clock.now() + 60);
    // Held, same length: a new item again, exptime unchanged.
    let held = [s.get(b"n", false, |r| r.map(|it| it.id()).unwrap())];
    let mut a = ArithArgs::new(b"n", true, 1);
    a.exptime = Some(clock.now() + 5);
    a.held = &held;
    let o = s.arith(&a);
    let before = clock.now() + 60;
    assert_eq!((o.value, o.exptime, o.prev_exptime), (14, before, before));
    assert_eq!(exp(b"n"), before);
}

#[test]
fn invalidate_in_place_reports_the_items_new_id() {
    let (s, _) = store(8);
    let id = |k: &[u8]| s.get(k, false, |r| r.map(|it| it.id()).unwrap());
    set(&s, b"n", b"100");
    let before = id(b"n");
    let mut d = DeleteArgs::new(b"n");
    d.invalidate = Some(None);
    let o = s.delete(&d);
    assert_eq!(o.renamed, Some((before, id(b"n"))));
    assert_ne!(before, id(b"n"));
    // Held under its new id, a decr makes a new item (not stale).
    let held = [id(b"n")];
    let mut a = ArithArgs::new(b"n", false, 95);
    a.held = &held;
    assert_eq!(s.arith(&a).value, 5);
    assert_eq!(get(&s, b"n").unwrap(), b"5");
    assert!(!s.get(b"n", false, |r| r.map(|it| it.stale()).unwrap()));
    // A plain delete and `x` (a new, empty item) rename nothing.
    let mut x = DeleteArgs::new(b"n");
    x.clear_value = true;
    x.invalidate = Some(None);
    assert_eq!(s.delete(&x).renamed, None);
    assert_eq!(s.delete(&DeleteArgs::new(b"n")).renamed, None);
}

#[test]
fn arith_on_a_held_item_stores_a_new_item_of_exact_length() {
    let (s, _) = store(8);
    let fetched = |k: &[u8]| s.get(k, false, |r| r.map(|it| it.fetched()).unwrap());
    let id = |k: &[u8]| s.get(k, true, |r| r.map(|it| it.id()).unwrap());
    set(&s, b"n", b"100");
    let held = [id(b"n")];
    let mut a = ArithArgs::new(b"n", false, 95);
    a.held = &held;
    let o = s.arith(&a);
    assert_eq!((o.status, o.value), (ArithStatus::Ok, 5));
    assert!(!fetched(b"n"), "the held item was rewritten in place");
    assert_eq!(get(&s, b"n").unwrap(), b"5");
    // The new item is not the held one: the next decr pads in place, and
    // the item keeps the fetched bit the get above gave it.
    set(&s, b"n", b"10");
    let mut a = ArithArgs::new(b"n", false, 1);
    a.held = &held;
    assert_eq!(s.arith(&a).value, 9);
    assert_eq!(get(&s, b"n").unwrap(), b"9 ");
    assert!(fetched(b"n"));
    // Same length, held: still a new item, so unfetched.
    let held = [id(b"n")];
    let mut a = ArithArgs::new(b"n", true, 1);
    a.held = &held;
    assert_eq!(s.arith(&a).value, 10);
    assert!(!fetched(b"n"));
    assert_eq!(get(&s, b"n").unwrap(), b"10");
}

#[test]
fn lazy_expiry_and_touch() {
    let (s, clock) = store(8);
    s.store(&StoreArgs::new(Mode::Set, b"k", 0, clock.now() + 10, b"v"));
    s.store(&StoreArgs::new(Mode::Set, b"forever", 0, 0, b"v"));
    clock.advance(5);
    assert!(get(&s, b"k").is_ok());
    // Touch via the closure.
    s.get(b"k", true, |r| r.unwrap().set_exptime(clock.now() + 100));
    clock.advance(50);
    assert!(get(&s, b"k").is_ok());
    clock.advance(100);
    assert_eq!(get(&s, b"k"), Err(Miss::Expired));
    assert_eq!(get(&s, b"k"), Err(Miss::NotFound));
    assert!(get(&s, b"forever").is_ok());
    // Lazy unlinking is not a reclaim (no memory was reused).
    assert_eq!(s.stats().reclaimed, 0);
    assert_eq!(s.stats().curr_items, 1);
}

#[test]
fn flush_now_and_delayed() {
    let (s, clock) = store(8);
    set(&s, b"a", b"1");
    set(&s, b"b", b"2");
    s.flush(0);
    assert_eq!(get(&s, b"a"), Err(Miss::Flushed));
    // Stored right after the flush (same second): valid.
    set(&s, b"c", b"3");
    assert!(get(&s, b"c").is_ok());
    assert_eq!(get(&s, b"b"), Err(Miss::Flushed));
    // Delayed flush.
    clock.advance(3);
    set(&s, b"d", b"4");
    s.flush(clock.now() + 10);
    clock.advance(5);
    assert!(get(&s, b"d").is_ok());
    clock.advance(10);
    assert_eq!(get(&s, b"d"), Err(Miss::Flushed));
    set(&s, b"e", b"5");
    assert!(get(&s, b"e").is_ok());
    // An absolute time before the start (realtime() = 1) flushes
    // nothing, as in memcached.
    s.flush(1);
    assert!(get(&s, b"e").is_ok());
}

#[test]
fn flushed_items_stay_flushed_after_a_later_flush() {
    for use_cas in [true, false] {
        let clock = Clock::new();
        let s = Store::new(StoreConfig { use_cas, ..cfg(8) }, clock.clone());
        set(&s, b"a", b"1");
        set(&s, b"b", b"2");
        clock.advance(2);
        s.flush(0);
        assert_eq!(get(&s, b"a"), Err(Miss::Flushed), "cas {use_cas}");
        clock.advance(2);
        set(&s, b"c", b"3");
        // A flush_all with an absolute time before the start (watermark 0)
        // or with a delay replaces the watermarks; `b`, hidden by the
        // first flush and never touched since, must stay hidden.
        s.flush(1);
        assert_eq!(get(&s, b"b"), Err(Miss::Flushed), "cas {use_cas}");
        assert!(get(&s, b"c").is_ok(), "cas {use_cas}");
        set(&s, b"b", b"4");
        s.flush(clock.now() + 10);
        assert_eq!(get(&s, b"b").unwrap(), b"4", "cas {use_cas}");
        assert!(get(&s, b"c").is_ok(), "cas {use_cas}");
        clock.advance(11);
        assert_eq!(get(&s, b"b"), Err(Miss::Flushed), "cas {use_cas}");
        assert_eq!(get(&s, b"c"), Err(Miss::Flushed), "cas {use_cas}");
    }
}

#[test]
fn delete_with_cas_and_invalidate() {
    let (s, clock) = store(8);
    let c = set(&s, b"k", b"v").cas;
    let mut d = DeleteArgs::new(b"k");
    d.cas = c + 1;
    assert_eq!(s.delete(&d).status, DeleteStatus::Exists);
    d.cas = 0;
    d.invalidate = Some(Some(clock.now() + 30));
    s.get(b"k", false, |r| r.unwrap().set_win_sent());
    assert_eq!(s.delete(&d).status, DeleteStatus::Deleted);
    s.get(b"k", false, |r| {
        let it = r.unwrap();
        assert!(it.stale());
        assert!(!it.win_sent(), "invalidation hands the token out again");
        assert!(it.cas() > c);
        assert_eq!(it.exptime(), clock.now() + 30);
    });
}

#[test]
fn win_token_and_last_access() {
    let (s, clock) = store(8);
    let mut a = StoreArgs::new(Mode::Set, b"k", 0, 0, b"");
    a.win_sent = true;
    s.store(&a);
    let t0 = clock.now();
    clock.advance(4);
    s.get(b"k", true, |r| {
        let it = r.unwrap();
        assert!(it.win_sent());
        assert_eq!(it.last_access(), t0);
    });
    s.get(b"k", false, |r| {
        assert_eq!(r.unwrap().last_access(), t0 + 4)
    });
    set(&s, b"j", b"");
    s.get(b"j", false, |r| {
        let it = r.unwrap();
        assert!(!it.win_sent());
        it.set_win_sent();
    });
    s.get(b"j", false, |r| assert!(r.unwrap().win_sent()));
    let mut b = StoreArgs::new(Mode::Set, b"bin", 0, 0, b"v");
    b.key_binary = true;
    s.store(&b);
    s.get(b"bin", false, |r| assert!(r.unwrap().key_binary()));
    s.get(b"j", false, |r| assert!(!r.unwrap().key_binary()));
}

#[test]
fn evicts_under_pressure_and_keeps_recent() {
    let (s, _) = store(8);
    let v = vec![b'v'; 1000];
    for i in 0..20_000u32 {
        let k = format!("key{i}");
        assert_eq!(set(&s, k.as_bytes(), &v).status, StoreStatus::Stored, "{i}");
    }
    let st = s.stats();
    assert!(st.evictions > 10_000, "{st:?}");
    assert!(st.curr_items < 9_000);
    assert!(st.total_malloced <= 9 << 20, "{st:?}");
    // The most recent keys are present.
    for i in 19_900..20_000u32 {
        assert_eq!(get(&s, format!("key{i}").as_bytes()).unwrap(), v);
    }
    assert_eq!(get(&s, b"key0"), Err(Miss::NotFound));
}

#[test]
fn no_evict_mode_reports_no_memory() {
    let clock = Clock::new();
    let s = Store::new(
        StoreConfig {
            evict_to_free: false,
            ..cfg(8)
        },
        clock,
    );
    let v = vec![b'v'; 1000];
    let mut nomem = 0;
    for i in 0..20_000u32 {
        match set(&s, format!("key{i}").as_bytes(), &v).status {
            StoreStatus::Stored => {}
            StoreStatus::NoMemory => nomem += 1,
            o => panic!("{o:?}"),
        }
    }
    assert!(nomem > 10_000);
    assert_eq!(s.stats().evictions, 0);
    assert_eq!(get(&s, b"key0").unwrap(), v);
}

#[test]
fn expired_items_reclaimed_before_eviction() {
    let (s, clock) = store(8);
    let v = vec![b'v'; 1000];
    let exp = clock.now() + 5;
    for i in 0..5000u32 {
        s.store(&StoreArgs::new(
            Mode::Set,
            format!("old{i}").as_bytes(),
            0,
            exp,
            &v,
        ));
    }
    clock.advance(10);
    for i in 0..5000u32 {
        set(&s, format!("new{i}").as_bytes(), &v);
    }
    let st = s.stats();
    assert!(st.reclaimed > 0, "{st:?}");
    // Live items outlive dead ones: with 5000 expired to reclaim, the
    // first new ones should not have been evicted in their favour.
    assert!(get(&s, b"new0").is_ok());
}

#[test]
fn lru_segments_fetched_active_and_rescue() {
    let (s, _) = store(8);
    // Enough items that every shard's HOT share (20%) is at least one.
    for i in 0..5000u32 {
        set(&s, format!("k{i}").as_bytes(), b"v");
    }
    let items = s.stats_items();
    let find = |items: &Vec<(String, String)>, k: &str| {
        items
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.parse::<u64>().unwrap())
            .unwrap()
    };
    let cold = find(&items, "items:1:number_cold");
    let hot = find(&items, "items:1:number_hot");
    assert!(cold > 0 && hot > 0, "{items:?}");
    assert!(find(&items, "items:1:moves_to_cold") > 0);
    // Each maintenance pass that moved items counts once: at least one per
    // shard, at most one per move.
    let st = s.stats();
    assert!(
        st.lru_maintainer_juggles >= NSHARDS as u64
            && st.lru_maintainer_juggles
                <= st.moves_to_cold + st.moves_to_warm + st.moves_within_lru,
        "{st:?}"
    );
    s.reset_stats();
    assert_eq!(s.stats().lru_maintainer_juggles, 0);
    // k0 is in COLD by now: first hit marks fetched, second active and
    // moves it to WARM.
    assert!(get(&s, b"k0").is_ok());
    assert!(get(&s, b"k0").is_ok());
    let items = s.stats_items();
    assert!(find(&items, "items:1:moves_to_warm") >= 1);
    assert!(find(&items, "items:1:number_warm") >= 1);
    assert_eq!(find(&items, "items:1:hits_to_cold"), 2);
    // The move to WARM spends the ACTIVE bit; a third hit sets it again.
    assert_eq!(s.lru_state(b"k0"), Some((WARM, false)));
    assert!(get(&s, b"k0").is_ok());
    assert_eq!(s.lru_state(b"k0"), Some((WARM, true)));
}

#[test]
fn stats_names_and_order() {
    let (s, _) = store(8);
    set(&s, b"abcdefghijabcdefghijabcdefghij12", &[b'0'; 100]);
    let items = s.stats_items();
    assert_eq!(
        items[0].0,
        format!("items:{}:number", items[0].0.split(':').nth(1).unwrap())
    );
    assert_eq!(items.len(), 28);
    assert!(items
        .iter()
        .any(|(k, v)| k.ends_with(":mem_requested") && v == "164"));
    let slabs = s.stats_slabs();
    let names: Vec<&str> = slabs
        .iter()
        .map(|(k, _)| k.split(':').next_back().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "chunk_size",
            "chunks_per_page",
            "total_pages",
            "total_chunks",
            "used_chunks",
            "free_chunks",
            "free_chunks_end",
            "get_hits",
            "cmd_set",
            "delete_hits",
            "incr_hits",
            "decr_hits",
            "cas_hits",
            "cas_badval",
            "touch_hits",
            "active_slabs",
            "total_malloced"
        ]
    );
    let st = s.stats();
    assert_eq!(st.curr_items, 1);
    assert_eq!(st.bytes, 164);
    assert_eq!(st.limit_maxbytes, 8 << 20);
    assert_eq!(s.stats_sizes()[0].0, "sizes_status");
    s.reset_stats();
    assert_eq!(s.stats().total_items, 0);
    assert_eq!(s.stats().bytes, 164);
}

#[test]
fn mem_limit_changes() {
    let (s, _) = store(8);
    assert_eq!(s.set_mem_limit(1 << 20), Err(MemLimitError::TooSmall));
    assert!(s.set_mem_limit(16 << 20).is_ok());
    assert_eq!(s.stats().limit_maxbytes, 16 << 20);
    let v = vec![b'v'; 1000];
    for i in 0..15_000u32 {
        set(&s, format!("key{i}").as_bytes(), &v);
    }
    assert!(s.stats().total_malloced > 9 << 20);
}

#[test]
fn hash_grows_per_shard() {
    let clock = Clock::new();
    let s = Store::new(
        StoreConfig {
            hashpower_init: 10,
            ..cfg(64)
        },
        clock,
    );
    let before = s.stats().hash_power_level;
    for i in 0..50_000u32 {
        set(&s, format!("k{i}").as_bytes(), b"v");
    }
    assert!(s.stats().hash_power_level > before);
    for i in 0..50_000u32 {
        assert!(get(&s, format!("k{i}").as_bytes()).is_ok(), "{i}");
    }
}

/// A tiny deterministic PRNG (xorshift) so the op stream is repeatable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_ops_against_model_under_pressure() {
    let (s, clock) = store(8);
    // key -> (value, exptime)
    let mut model: HashMap<Vec<u8>, (Vec<u8>, u32)> = HashMap::new();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut evicted_ok = 0u64;
    for step in 0..60_000u32 {
        let k = format!("key{}", rng.below(20_000)).into_bytes();
        let now = clock.now();
        match rng.below(10) {
            0..=3 => {
                let len = match rng.below(10) {
                    0 => rng.below(20_000) as usize,
                    1 => 0,
                    _ => rng.below(3000) as usize,
                };
                let byte = b'a' + (step % 26) as u8;
                let v = vec![byte; len];
                let exp = if rng.below(5) == 0 {
                    now + 1 + rng.below(5) as u32
                } else {
                    0
                };
                let o = s.store(&StoreArgs::new(Mode::Set, &k, 0, exp, &v));
                assert_eq!(o.status, StoreStatus::Stored);
                model.insert(k, (v, exp));
            }
            4..=6 => {
                let got = get(&s, &k);
                match (got, model.get(&k)) {
                    (Ok(v), Some((mv, _))) => assert_eq!(&v, mv, "wrong value at step {step}"),
                    (Ok(v), None) => panic!("resurrected {k:?} {} at {step}", v.len()),
                    (Err(Miss::Expired), Some((_, e))) => {
                        assert!(*e != 0 && *e <= now, "early expiry at {step}");
                        model.remove(&k);
                    }
                    (Err(Miss::NotFound), Some((_, e))) => {
                        // Explained only by eviction or by expiry.
                        let st = s.stats();
                        assert!(
                            *e != 0 && *e <= now
                                || st.evictions + st.slab_reassign_evictions_nomem > 0,
                            "unexplained miss at {step}"
                        );
                        evicted_ok += 1;
                        model.remove(&k);
                    }
                    (Err(m), None) => assert_ne!(m, Miss::Flushed),
                    (Err(m), Some(_)) => panic!("{m:?} at {step}"),
                }
            }
            7 => {
                let o = s.delete(&DeleteArgs::new(&k));
                if o.status == DeleteStatus::Deleted {
                    assert!(model.remove(&k).is_some(), "deleted a ghost at {step}");
                } else {
                    model.remove(&k);
                }
            }
            8 => {
                let o = s.arith(&ArithArgs::new(&k, true, 3));
                match o.status {
                    ArithStatus::Ok => {
                        let (mv, e) = model.get(&k).cloned().expect("arith on ghost");
                        let old = parse_number(&mv).unwrap();
                        assert_eq!(o.value, old.wrapping_add(3));
                        let mut digits = o.value.to_string().into_bytes();
                        if digits.len() < mv.len() {
                            digits.resize(mv.len(), b' ');
                        }
                        model.insert(k, (digits, e));
                    }
                    ArithStatus::NonNumeric => {
                        let (mv, _) = model.get(&k).expect("nonnumeric ghost");
                        assert!(
                            mv.is_empty() || mv.len() > 1_000_000 || parse_number(mv).is_none()
                        );
                    }
                    ArithStatus::NotFound => {
                        model.remove(&k);
                    }
                    other => panic!("{other:?}"),
                }
            }
            _ => {
                // Numeric set + CAS update.
                let n = rng.below(1000).to_string().into_bytes();
                let c = s.store(&StoreArgs::new(Mode::Set, &k, 0, 0, &n)).cas;
                model.insert(k.clone(), (n, 0));
                let mut a = StoreArgs::new(Mode::Set, &k, 0, 0, b"casv");
                a.cas = c;
                match s.store(&a).status {
                    StoreStatus::Stored => {
                        model.insert(k, (b"casv".to_vec(), 0));
                    }
                    StoreStatus::NotFound => {
                        model.remove(&k);
                    }
                    o => panic!("{o:?}"),
                }
            }
        }
        if step % 5000 == 0 {
            clock.advance(1);
        }
        // Now and then an operator's `slabs reassign -1 <dst>`: items it
        // rescues must keep their values, and what it evicts is counted.
        if step % 797 == 0 {
            let dst = rng.below(u64::from(s.slabs.largest) + 1) as i32;
            if let Ok((src, dst)) = s.reassign_check(-1, dst) {
                s.reassign(src, dst);
            }
        }
    }
    let st = s.stats();
    assert!(
        st.evictions + st.slab_reassign_evictions_nomem > 0,
        "test did not reach memory pressure"
    );
    assert!(st.slabs_moved > 0, "no page moved");
    assert!(evicted_ok > 0, "no miss was ever explained by eviction");
}

#[test]
fn concurrent_threads_see_consistent_values() {
    let (s, _) = store(16);
    let s = Arc::new(s);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(t * 7919 + 1);
                for i in 0..20_000u64 {
                    let k = format!("k{}", rng.below(500));
                    match rng.below(4) {
                        0 | 1 => {
                            // Value is self-describing: key repeated.
                            let n = 1 + rng.below(300) as usize;
                            let v: Vec<u8> = k.bytes().cycle().take(n * k.len()).collect();
                            set(&s, k.as_bytes(), &v);
                        }
                        2 => {
                            if let Ok(v) = get(&s, k.as_bytes()) {
                                let want: Vec<u8> = k.bytes().cycle().take(v.len()).collect();
                                assert_eq!(v, want, "torn value at {i}");
                                assert_eq!(v.len() % k.len(), 0);
                            }
                        }
                        _ => {
                            s.delete(&DeleteArgs::new(k.as_bytes()));
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = s.stats();
    assert!(st.curr_items <= 500);
}

/// Pages move (rescuing and evicting items) while other threads store,
/// read and delete: no reader ever sees a wrong or torn value.
#[test]
fn page_moves_under_concurrent_load_keep_values_whole() {
    // Room for every class to keep pages, so moves rescue items.
    let (s, _) = store(64);
    let s = Arc::new(s);
    let stop = Arc::new(AtomicBool::new(false));
    let mover = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(99);
            let mut moved = 0;
            while !stop.load(Ordering::Relaxed) {
                let dst = rng.below(u64::from(s.slabs.largest) + 1) as i32;
                if let Ok((src, dst)) = s.reassign_check(-1, dst) {
                    moved += u32::from(s.reassign(src, dst));
                }
            }
            moved
        })
    };
    let workers: Vec<_> = (0..3u64)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(t * 31 + 7);
                for i in 0..30_000u64 {
                    let k = format!("k{}", rng.below(20_000));
                    if rng.below(2) == 0 {
                        // Three sizes, so each class spans several pages,
                        // and now and then a chained one (over 512 KB).
                        let n = if rng.below(500) == 0 {
                            100_000
                        } else {
                            [20, 80, 180][rng.below(3) as usize]
                        };
                        let v: Vec<u8> = k.bytes().cycle().take(n * k.len()).collect();
                        set(&s, k.as_bytes(), &v);
                    } else if let Ok(v) = get(&s, k.as_bytes()) {
                        let want: Vec<u8> = k.bytes().cycle().take(v.len()).collect();
                        assert_eq!(v, want, "torn value at {i}");
                    }
                    if i % 100 == 0 {
                        s.delete(&DeleteArgs::new(k.as_bytes()));
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let moved = mover.join().unwrap();
    let st = s.stats();
    assert!(
        moved > 0 && st.slabs_moved >= u64::from(moved),
        "{moved} {st:?}"
    );
    assert!(st.slab_reassign_rescues > 0, "{st:?}");
}

#[test]
fn concurrent_incr_is_atomic() {
    let (s, _) = store(8);
    set(&s, b"ctr", b"0");
    let s = Arc::new(s);
    let ts: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..5000 {
                    assert_eq!(
                        s.arith(&ArithArgs::new(b"ctr", true, 1)).status,
                        ArithStatus::Ok
                    );
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    assert_eq!(parse_number(&get(&s, b"ctr").unwrap()), Some(20_000));
}

/// The rebalancing target at reduced scale (debug builds are slow): a
/// cache full of small values, then a shift to large ones.
#[test]
fn pages_move_when_size_mix_shifts() {
    let (s, _) = store(16);
    let small = vec![b's'; 100];
    for i in 0..150_000u32 {
        assert_eq!(
            set(&s, format!("small:{i}").as_bytes(), &small).status,
            StoreStatus::Stored
        );
    }
    let big = vec![b'b'; 10 * 1024];
    for i in 0..5_000u32 {
        assert_eq!(
            set(&s, format!("big:{i}").as_bytes(), &big).status,
            StoreStatus::Stored
        );
    }
    let hits = (4_250..5_000u32)
        .filter(|i| get(&s, format!("big:{i}").as_bytes()).is_ok())
        .count();
    assert!(
        hits * 100 >= 750 * 90,
        "only {hits}/750 hit; {:?}",
        s.stats()
    );
    assert!(s.stats().slabs_moved > 0);
}

/// Full-size target from the issue: `-m 64`, 600,000 x 100 B then
/// 20,000 x 10 KB; >= 90% of the last 3,000 large keys hit.
/// Run with `cargo test --release --lib rebalance_target -- --ignored`.
#[test]
#[ignore]
fn rebalance_target_full_size() {
    let (s, _) = store(64);
    let small = vec![b's'; 100];
    for i in 0..600_000u32 {
        assert_eq!(
            set(&s, format!("small:{i}").as_bytes(), &small).status,
            StoreStatus::Stored
        );
    }
    let big = vec![b'b'; 10 * 1024];
    for i in 0..20_000u32 {
        assert_eq!(
            set(&s, format!("big:{i}").as_bytes(), &big).status,
            StoreStatus::Stored
        );
    }
    let hits = (17_000..20_000u32)
        .filter(|i| get(&s, format!("big:{i}").as_bytes()).is_ok())
        .count();
    println!("hits {hits}/3000, {:?}", s.stats());
    assert!(hits >= 2700, "only {hits}/3000 hit");
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Bytes of RSS per item for 1M items with 32-byte keys and 100-byte
/// values (memcached: about 206). Run with
/// `cargo test --release --lib rss_per_item -- --ignored --nocapture`.
#[test]
#[ignore]
fn rss_per_item() {
    let clock = Clock::new();
    let before = rss_bytes();
    let s = Store::new(cfg(1024), clock);
    let value = [b'v'; 100];
    let mut key = *b"key:000000000000000000000000000:";
    for i in 0..1_000_000u32 {
        let d = format!("{i:027}");
        key[4..31].copy_from_slice(d.as_bytes());
        assert_eq!(set(&s, &key, &value).status, StoreStatus::Stored);
    }
    let after = rss_bytes();
    let per = (after - before) as f64 / 1e6;
    println!("rss per item: {per:.1} bytes ({:?})", s.stats());
    assert_eq!(s.stats().curr_items, 1_000_000);
    assert!(per < 206.0, "{per}");
}

/// Eviction, page moves, appends and deletes from 4 threads at once on a
/// small cache with mixed sizes: no deadlock, no torn or foreign value
/// (each key's value is one repeated byte derived from the key).
#[test]
fn concurrent_pressure_with_page_moves() {
    pressure_with_page_moves(false, false);
}

/// The same with half the sets made as a connection makes a large one:
/// the item reserved first, its value written in pieces while other
/// threads evict and move pages, then stored (`fill`).
#[test]
fn concurrent_pressure_with_reserved_values() {
    pressure_with_page_moves(true, false);
}

/// The same with half the gets pinning the value they hit and reading it
/// only after yielding to the other threads (as a worker sends a large
/// value after the lock): the pinned bytes never change.
#[test]
fn concurrent_pressure_with_pinned_values() {
    pressure_with_page_moves(false, true);
}

fn pressure_with_page_moves(reserve: bool, pin: bool) {
    let (s, _) = store(8);
    let s = Arc::new(s);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(t * 104_729 + 3);
                // Threads shift from small to large values at different
                // times, so classes keep competing for pages.
                for i in 0..6_000u64 {
                    let id = rng.below(4000);
                    let k = format!("key{id}");
                    let b = b'a' + (id % 26) as u8;
                    let big = (i / 1500 + t) % 2 == 1;
                    let len = if big {
                        2000 + rng.below(6000)
                    } else {
                        1 + rng.below(200)
                    } as usize;
                    match rng.below(6) {
                        0..=2 if reserve && rng.below(2) == 0 => {
                            let Some(mut r) = s.reserve(k.as_bytes(), 0, 0, 0, len) else {
                                panic!("no memory for {k} with eviction on");
                            };
                            for piece in vec![b; len].chunks(700) {
                                s.fill(&mut r, piece);
                                std::thread::yield_now();
                            }
                            let a = StoreArgs::new(Mode::Set, k.as_bytes(), 0, 0, b"");
                            assert_eq!(s.store_reserved(&a, r).status, StoreStatus::Stored);
                        }
                        0..=2 => {
                            let v = vec![b; len];
                            let st = set(&s, k.as_bytes(), &v).status;
                            // Pins held across yields on a busy machine
                            // can hold every chunk a small class has (an
                            // evicted pinned item is freed at its unpin),
                            // and make a page move give up: then the store
                            // is refused, as memcached refuses one when
                            // every tail item is referenced.
                            let refused = pin && st == StoreStatus::NoMemory;
                            assert!(st == StoreStatus::Stored || refused, "{st:?}");
                        }
                        3 => {
                            let v = vec![b; len / 4 + 1];
                            s.store(&StoreArgs::new(Mode::Append, k.as_bytes(), 0, 0, &v));
                        }
                        4 if pin && rng.below(2) == 0 => {
                            let mut segs = Vec::new();
                            let p = s.get(k.as_bytes(), true, |r| {
                                r.ok()
                                    .map(|it| it.pin(|ptr, len| segs.push((ptr, len))).unwrap())
                            });
                            let Some(p) = p else { continue };
                            for _ in 0..3 {
                                std::thread::yield_now();
                            }
                            for &(ptr, len) in &segs {
                                // SAFETY: read while the pin is held.
                                let v = unsafe { std::slice::from_raw_parts(ptr, len) };
                                assert!(v.iter().all(|&x| x == b), "pinned {k} changed");
                            }
                            s.unpin(p);
                        }
                        4 => {
                            if let Ok(v) = get(&s, k.as_bytes()) {
                                assert!(v.iter().all(|&x| x == b), "foreign bytes in {k}");
                            }
                        }
                        _ => {
                            s.delete(&DeleteArgs::new(k.as_bytes()));
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(s.pinned_items(), 0);
    if !reserve {
        // One chunk per item (no value here is chained): every chunk of
        // an item removed while pinned went back at its unpin.
        let used: u64 = s
            .stats_slabs()
            .iter()
            .filter(|(k, _)| k.ends_with(":used_chunks"))
            .map(|(_, v)| v.parse::<u64>().unwrap())
            .sum();
        assert_eq!(used, s.stats().curr_items);
    }
    let st = s.stats();
    assert!(
        st.evictions + st.slab_reassign_evictions_nomem > 0,
        "{st:?}"
    );
    assert!(st.total_malloced <= 8 << 20, "{st:?}");
}

#[test]
fn a_class_without_pages_still_stores_when_memory_is_full() {
    for automove in [0u8, 1] {
        let clock = Clock::new();
        let s = Store::new(
            StoreConfig {
                slab_automove: automove,
                ..cfg(8)
            },
            clock,
        );
        let v = vec![b'v'; 1000];
        for i in 0..10_000u32 {
            assert_eq!(
                set(&s, format!("k{i}").as_bytes(), &v).status,
                StoreStatus::Stored
            );
        }
        // A size no page has been cut for yet.
        assert_eq!(set(&s, b"small", b"x").status, StoreStatus::Stored);
        assert_eq!(get(&s, b"small").unwrap(), b"x");
        let st = s.stats();
        if automove == 0 {
            // memcached's rule: a class's first page may pass the limit.
            assert_eq!(st.total_malloced, 9 << 20, "{st:?}");
        } else {
            // The page mover gave it a page instead.
            assert_eq!(st.total_malloced, 8 << 20, "{st:?}");
            assert!(st.slabs_moved >= 1);
        }
    }
}

#[test]
fn size_histogram_follows_links_and_unlinks() {
    let clock = Clock::new();
    let s = Store::new(
        StoreConfig {
            track_sizes: true,
            ..cfg(8)
        },
        clock,
    );
    let big = vec![b'x'; 600 * 1024];
    set(&s, b"c", &[b'y'; 5000]);
    set(&s, b"big", &big);
    set(&s, b"a", b"v");
    // Sizes are gannet's: header + key + value, rounded up to 32.
    let want = |v: &[(usize, u64)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let big_bucket = (crate::store::item::HDR + 3 + big.len()).div_ceil(32) * 32;
    assert_eq!(
        s.stats_sizes(),
        want(&[(64, 1), (5056, 1), (big_bucket, 1)])
    );
    s.delete(&DeleteArgs::new(b"big"));
    set(&s, b"a", b"w");
    assert_eq!(s.stats_sizes(), want(&[(64, 1), (5056, 1)]));
    assert!(s.track_sizes());
    assert_eq!(s.set_track_sizes(false), Ok(()));
    assert_eq!(
        s.stats_sizes(),
        vec![("sizes_status".to_string(), "disabled".to_string())]
    );
    // On again: "a" (stored before) is left out, also when it goes.
    assert_eq!(s.set_track_sizes(true), Ok(()));
    set(&s, b"b", b"v");
    s.delete(&DeleteArgs::new(b"a"));
    assert_eq!(s.stats_sizes(), want(&[(64, 1)]));
}

/// Without CAS the histogram cannot tell old items from new: refused, as
/// memcached refuses it.
#[test]
fn sizes_enable_is_refused_without_cas() {
    let s = Store::new(
        StoreConfig {
            use_cas: false,
            ..cfg(8)
        },
        Clock::new(),
    );
    assert_eq!(s.set_track_sizes(true), Err(SizesRefused::CasDisabled));
    assert!(!s.track_sizes());
}

/// `class_for_item` names the class a store of that size really uses,
/// chained items and nonzero flags included, for several class tables.
#[test]
fn class_for_item_matches_the_class_stored_in() {
    let cases = [
        StoreConfig::default(),
        StoreConfig {
            growth_factor: 1.07,
            chunk_size_min: 100,
            ..StoreConfig::default()
        },
        StoreConfig {
            growth_factor: 2.0,
            slab_chunk_max: 64 * 1024,
            ..StoreConfig::default()
        },
    ];
    for mut c in cases {
        c.mem_limit = 64 << 20;
        let s = Store::new(c, Clock::new());
        let value = vec![b'v'; 600_000];
        let mut checked = 0;
        let mut len = 0;
        while len < value.len() {
            for (nkey, flags) in [(1, 0), (10, 5), (250, 0), (250, 1)] {
                let key = vec![b'k'; nkey];
                let res = s.store(&StoreArgs::new(Mode::Set, &key, flags, 0, &value[..len]));
                if res.status != StoreStatus::Stored {
                    continue;
                }
                assert_eq!(
                    s.class_for_item(nkey, flags, len),
                    res.class,
                    "key {nkey} flags {flags} value {len}"
                );
                checked += 1;
            }
            len = len * 9 / 8 + 7;
        }
        assert!(checked > 150, "{checked}");
    }
}

#[test]
fn crawl_reclaims_expired_and_flushed_items_only() {
    let (s, clock) = store(8);
    for i in 0..3000u32 {
        let exp = if i % 3 == 0 { clock.now() + 10 } else { 0 };
        let k = format!("k{i}");
        s.store(&StoreArgs::new(Mode::Set, k.as_bytes(), 0, exp, b"v"));
    }
    // One expired item was fetched: it is not `expired_unfetched`.
    assert!(get(&s, b"k0").is_ok());
    clock.advance(11);
    let mut c = Crawl::new(u64::MAX, 0);
    while s.crawl_step(&mut c) {}
    assert_eq!(c.tally.checked, 3000);
    assert_eq!(c.tally.reclaimed, 1000);
    // Per LRU: what was reclaimed, and what is left (none with a TTL).
    let per: Vec<_> = c
        .tally
        .lru
        .iter()
        .filter(|t| t.seen + t.reclaimed > 0)
        .collect();
    assert!(!per.is_empty());
    assert_eq!(per.iter().map(|t| t.reclaimed).sum::<u64>(), 1000);
    assert_eq!(per.iter().map(|t| t.seen).sum::<u64>(), 2000);
    assert_eq!(per.iter().map(|t| t.noexp).sum::<u64>(), 2000);
    let st = s.stats();
    assert_eq!(st.curr_items, 2000);
    assert_eq!(st.crawler_reclaimed, 1000);
    assert_eq!(st.crawler_items_checked, 3000);
    assert_eq!(st.expired_unfetched, 999);
    assert_eq!(st.reclaimed, 0, "a crawl is not an allocation reclaim");
    let items = s.stats_items();
    assert!(items.contains(&("items:1:crawler_reclaimed".into(), "1000".into())));
    assert!(get(&s, b"k1").is_ok());
    // Flushed items are reclaimed too, but never count as unfetched.
    s.flush(0);
    let mut c = Crawl::new(u64::MAX, 0);
    while s.crawl_step(&mut c) {}
    assert_eq!(c.tally.reclaimed, 2000);
    assert_eq!(s.stats().curr_items, 0);
    assert_eq!(s.stats().expired_unfetched, 999);
}

#[test]
fn crawl_honours_classes_and_limit_and_tallies_each_lru() {
    let (s, clock) = store(8);
    let small = s.class_for_item(2, 0, 1);
    let big = s.class_for_item(2, 0, 2000);
    assert_ne!(small, big);
    for i in 0..500u32 {
        let k = format!("s{i}");
        let exp = clock.now() + 5;
        s.store(&StoreArgs::new(Mode::Set, k.as_bytes(), 0, exp, b"v"));
        let k = format!("b{i}");
        let v = [b'x'; 2000];
        // TTLs of 50 s, 10 min, 2 h and none, in turn.
        let exp = [50, 600, 7200, 0][i as usize % 4];
        let exp = if exp == 0 { 0 } else { clock.now() + exp };
        s.store(&StoreArgs::new(Mode::Set, k.as_bytes(), 0, exp, &v));
    }
    let ids = |class: u8| (0..4u8).map(move |seg| lru_id(class, seg));
    // Only the big class, at most 100 items of each of its LRUs.
    let mut c = Crawl::new(1 << big, 100);
    while s.crawl_step(&mut c) {}
    let sizes: Vec<u64> = ids(big).map(|id| c.tally.lru[id].seen).collect();
    assert!(sizes.iter().all(|&n| n <= 100), "{sizes:?}");
    assert_eq!(c.tally.checked, sizes.iter().sum::<u64>());
    assert!(c.tally.checked >= 100);
    // The whole class: by TTL left, each LRU's items add up.
    let mut c = Crawl::new(1 << big, 0);
    while s.crawl_step(&mut c) {}
    assert_eq!((c.tally.checked, c.tally.reclaimed), (500, 0));
    let sum = |f: &dyn Fn(&LruTally) -> u64| ids(big).map(|id| f(&c.tally.lru[id])).sum::<u64>();
    assert_eq!(sum(&|t| t.seen), 500);
    assert_eq!(sum(&|t| t.noexp), 125);
    assert_eq!(sum(&|t| t.ttl_hourplus), 125);
    assert_eq!(sum(&|t| t.histo[0]), 125, "50 s left: minute 0");
    assert_eq!(sum(&|t| t.histo[10]), 125, "600 s left: minute 10");
    assert_eq!(sum(&|t| t.histo.iter().sum()), 250);
    assert!(ids(small).all(|id| c.tally.lru[id] == LruTally::default()));
    clock.advance(6);
    assert_eq!(
        s.stats().curr_items,
        1000,
        "the small class was not crawled"
    );
    // One segment of the small class only: the others keep their items.
    let hot_or_cold = [HOT, COLD]
        .into_iter()
        .find(|&seg| {
            let mut c = Crawl::of_lrus(lrus_of(small, seg), 0);
            while s.crawl_step(&mut c) {}
            c.tally.reclaimed > 0
        })
        .expect("the small items are in HOT or COLD");
    let id = lru_id(small, hot_or_cold);
    let mut c = Crawl::new(1 << small, 0);
    while s.crawl_step(&mut c) {}
    assert_eq!(c.tally.lru[id].reclaimed, 0, "already reclaimed");
    assert_eq!(s.stats().curr_items, 500);
    assert_eq!(s.stats().crawler_reclaimed, 500);
}

fn lrus_of(class: u8, seg: u8) -> [u64; 4] {
    let mut m = [0; 4];
    m[seg as usize] = 1 << class;
    m
}

#[test]
fn dump_lists_each_live_item_of_the_wanted_classes_once() {
    let (s, clock) = store(8);
    let small = s.class_for_item(2, 0, 1);
    for i in 0..2000u32 {
        set(&s, format!("k{i}").as_bytes(), b"v");
    }
    set(&s, b"big", &[b'x'; 3000]);
    s.store(&StoreArgs::new(
        Mode::Set,
        b"gone",
        0,
        clock.now() + 1,
        b"v",
    ));
    s.store(&StoreArgs::new(
        Mode::Set,
        b"later",
        0,
        clock.now() + 100,
        b"v",
    ));
    clock.advance(2);
    let mut keys = Vec::new();
    let mut w = Walk::new(1 << small);
    let mut more = true;
    while more {
        more = s.dump_step(&mut w, |it| keys.push(it.key().to_vec()));
    }
    keys.sort();
    let mut want: Vec<Vec<u8>> = (0..2000u32).map(|i| format!("k{i}").into_bytes()).collect();
    want.push(b"later".to_vec());
    want.sort();
    assert_eq!(keys, want);
    // A dump reclaims nothing: the expired item is still counted.
    assert_eq!(s.stats().curr_items, 2003);
    let mut all = 0;
    let mut w = Walk::new(u64::MAX);
    while s.dump_step(&mut w, |_| all += 1) {}
    assert_eq!(all, 2002);
}

/// `-o slab_sizes`: items take the smallest listed chunk they fit, and
/// `stats slabs` shows the listed sizes.
#[test]
fn listed_slab_sizes_decide_the_chunk() {
    let s = Store::new(
        StoreConfig {
            slab_sizes: Some(vec![64, 164, 400]),
            ..cfg(8)
        },
        Clock::new(),
    );
    let sizes: Vec<u32> = s.class_table().iter().map(|c| c.1).collect();
    assert_eq!(sizes, [64, 168, 400, 512 * 1024]);
    // 32-byte header + 32-byte key + 100-byte value = 164 bytes.
    assert_eq!(s.class_for_item(32, 0, 100), 2);
    assert_eq!(s.class_for_item(32, 0, 104), 2);
    assert_eq!(s.class_for_item(32, 0, 105), 3);
    assert_eq!(s.class_for_item(32, 0, 1000), 4);
    let key = [b'k'; 32];
    let o = set(&s, &key, &[b'v'; 100]);
    assert_eq!((o.status, o.class), (StoreStatus::Stored, 2));
    assert_eq!(get(&s, &key).unwrap(), vec![b'v'; 100]);
    let slabs = s.stats_slabs();
    let stat = |k: &str| slabs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(stat("2:chunk_size").as_deref(), Some("168"));
    assert_eq!(stat("2:used_chunks").as_deref(), Some("1"));
    assert_eq!(stat("1:chunk_size"), None, "class 1 has no page");
}

fn class_pages(s: &Store, class: u8) -> usize {
    s.slabs.class_state(class).pages.len()
}

/// `slabs reassign`: a page of a class with room elsewhere moves without
/// losing an item (each is copied to a free chunk of the class); without
/// room, what the page held is evicted and counted, and every item left
/// still has its own value.
#[test]
fn reassign_rescues_items_when_the_class_has_room() {
    let s = Store::new(cfg(64), Clock::new());
    let v = |i: u32| format!("{i:0>1000}").into_bytes();
    let n = 3000u32;
    for i in 0..n {
        assert_eq!(
            set(&s, format!("k{i}").as_bytes(), &v(i)).status,
            StoreStatus::Stored
        );
    }
    let class = s.class_for_item(5, 0, 1000);
    let pages = class_pages(&s, class);
    assert!(pages >= 3, "{pages} pages");
    // Free more than a page worth of chunks, spread over every page.
    let perpage = s.slabs.class(class).perpage;
    let mut gone = std::collections::HashSet::new();
    for i in (0..n).step_by(2).take(perpage as usize + 10) {
        s.delete(&DeleteArgs::new(format!("k{i}").as_bytes()));
        gone.insert(i);
    }
    let other = s.class_for_item(5, 0, 100);
    assert_eq!(
        s.reassign_check(class as i32, other as i32),
        Ok((class, other))
    );
    assert!(s.reassign(class, other));
    let st = s.stats();
    assert_eq!(st.slabs_moved, 1);
    assert_eq!(st.slab_reassign_evictions_nomem, 0, "{st:?}");
    assert!(st.slab_reassign_rescues > 0, "{st:?}");
    assert!(!st.slab_reassign_running);
    assert_eq!(class_pages(&s, class), pages - 1);
    assert_eq!(class_pages(&s, other), 1);
    assert_eq!(st.curr_items, u64::from(n) - gone.len() as u64);
    for i in 0..n {
        let got = get(&s, format!("k{i}").as_bytes());
        if gone.contains(&i) {
            assert_eq!(got, Err(Miss::NotFound));
        } else {
            assert_eq!(got.as_deref(), Ok(&v(i)[..]), "k{i}");
        }
    }
    // The destination carves its new page.
    assert_eq!(set(&s, b"small", &[b's'; 100]).class, other);
    assert_eq!(class_pages(&s, other), 1);

    // No room left: the page's items are evicted, the rest stay intact.
    for i in n..n + 2 * perpage {
        set(&s, format!("k{i}").as_bytes(), &v(i));
    }
    let before = s.stats();
    assert!(s.reassign(class, 0));
    let st = s.stats();
    let evicted = st.slab_reassign_evictions_nomem;
    assert!(evicted > 0, "{st:?}");
    assert_eq!(st.curr_items + evicted, before.curr_items);
    assert_eq!(st.slab_global_page_pool, 1, "{st:?}");
    let mut found = 0;
    for i in 0..n + 2 * perpage {
        if let Ok(got) = get(&s, format!("k{i}").as_bytes()) {
            assert_eq!(got, v(i), "k{i}");
            found += 1;
        }
    }
    // Every item but "small" is a k-key.
    assert_eq!(found + 1, st.curr_items);
    // From the pool to a class.
    assert_eq!(
        s.reassign_check(0, class as i32),
        Err(ReassignError::NoSpare)
    );
}

/// A page of the chunk-max class holds heads and continuation chunks of
/// chained items: when it drains, each continuation chunk moves to a free
/// chunk elsewhere with the link before it repointed (memcached's chunk
/// rescue), so no chained item is lost while the class has room.
#[test]
fn reassign_rescues_the_chunks_of_chained_items() {
    let s = Store::new(
        StoreConfig {
            item_size_max: 2 << 20,
            ..cfg(64)
        },
        Clock::new(),
    );
    // Three chunks each: heads and continuations straddle pages.
    let v = |i: u32| -> Vec<u8> { (0..1_200_000u32).map(|j| (i * 7 + j % 251) as u8).collect() };
    let n = 12u32;
    for i in 0..n {
        assert_eq!(
            set(&s, format!("big{i}").as_bytes(), &v(i)).status,
            StoreStatus::Stored
        );
    }
    let largest = s.slabs.largest;
    let pages = class_pages(&s, largest);
    assert_eq!(pages, 18);
    for i in (1..n).step_by(3) {
        s.delete(&DeleteArgs::new(format!("big{i}").as_bytes()));
    }
    // Each deleted item left one page empty (those move first) and one
    // chunk free; the two moves after those drain the first pages, which
    // hold a head, a continuation linked from a head and one linked from
    // another continuation, using 3 of the 4 free chunks.
    for _ in 0..6 {
        assert!(s.reassign(largest, 0));
    }
    let st = s.stats();
    assert_eq!(st.slab_reassign_evictions_nomem, 0, "{st:?}");
    assert!(st.slab_reassign_chunk_rescues >= 2, "{st:?}");
    assert!(st.slab_reassign_rescues >= 1, "{st:?}");
    assert_eq!(st.slab_global_page_pool, 6);
    assert_eq!(class_pages(&s, largest), pages - 6);
    assert_eq!(st.curr_items, 8);
    for i in 0..n {
        let got = get(&s, format!("big{i}").as_bytes());
        if i % 3 == 1 {
            assert_eq!(got, Err(Miss::NotFound));
        } else {
            assert!(got.as_deref() == Ok(&v(i)[..]), "big{i} changed");
        }
    }
}

/// The automover's check: a class with more than 2.5 pages of free
/// chunks gives pages to the pool only once its window (here 3 checks)
/// has seen no new page and no eviction; then it gives one per check, its
/// items rescued, until 2.5 pages or less are free. A new page or an
/// eviction makes the class wait a whole window again; a change of
/// `slab_automove_ratio` starts the window over, as in memcached.
#[test]
fn automove_returns_pages_of_a_quiet_class_to_the_pool() {
    let s = Store::new(cfg(64), Clock::new());
    let mut w = AutomoveWindow::new(&s, 3);
    let v = |i: u32| format!("{i:0>1000}").into_bytes();
    let n = 8000u32;
    for i in 0..n {
        set(&s, format!("k{i}").as_bytes(), &v(i));
    }
    let class = s.class_for_item(5, 0, 1000);
    let pages = class_pages(&s, class);
    let perpage = s.slabs.class(class).perpage as usize;
    for i in (0..n).filter(|i| i % 10 != 0) {
        s.delete(&DeleteArgs::new(format!("k{i}").as_bytes()));
    }
    let live = (n / 10) as usize;
    // Check 1 sees the pages the sets added; checks 2 and 3 still have it
    // in their window.
    for k in 1..=3 {
        assert!(!s.automove_check(&mut w), "check {k} moved a page");
    }
    assert_eq!(class_pages(&s, class), pages);
    let mut moved = 0;
    while s.automove_check(&mut w) {
        moved += 1;
        assert!(moved <= pages, "more pages moved than the class had");
    }
    let left = class_pages(&s, class);
    assert_eq!(left + moved, pages);
    let free = |p: usize| (p * perpage - live) as f64;
    assert!(free(left) <= 2.5 * perpage as f64, "{left} pages left");
    assert!(free(left + 1) > 2.5 * perpage as f64, "{left} pages left");
    let st = s.stats();
    assert_eq!(st.slab_global_page_pool as usize, moved);
    assert_eq!(st.slabs_moved as usize, moved);
    assert_eq!(st.slab_reassign_evictions_nomem, 0);
    for i in 0..n {
        let got = get(&s, format!("k{i}").as_bytes());
        if i % 10 == 0 {
            assert_eq!(got.as_deref(), Ok(&v(i)[..]), "k{i}");
        } else {
            assert_eq!(got, Err(Miss::NotFound));
        }
    }

    // A class that just got pages waits a whole window again.
    for i in n..n + 4 * perpage as u32 {
        set(&s, format!("k{i}").as_bytes(), &v(i));
    }
    for i in n..n + 4 * perpage as u32 {
        s.delete(&DeleteArgs::new(format!("k{i}").as_bytes()));
    }
    for k in 1..=3 {
        assert!(!s.automove_check(&mut w), "check {k} after growth");
    }
    assert!(s.automove_check(&mut w));

    // A new ratio starts the window over: nothing in it is dirty.
    for i in n..n + 4 * perpage as u32 {
        set(&s, format!("k{i}").as_bytes(), &v(i));
    }
    for i in n..n + 4 * perpage as u32 {
        s.delete(&DeleteArgs::new(format!("k{i}").as_bytes()));
    }
    s.set_automove_ratio(0.5);
    assert!(s.automove_check(&mut w));

    // Only at slab_automove=1.
    for level in [0, 2] {
        s.set_automove(level);
        assert!(!s.automove_check(&mut w), "level {level}");
    }
}

#[test]
fn reassign_checks_are_memcacheds() {
    let s = Store::new(cfg(64), Clock::new());
    let largest = i32::from(s.slabs.largest);
    assert_eq!(s.reassign_check(3, 3), Err(ReassignError::Same));
    assert_eq!(s.reassign_check(-1, -1), Err(ReassignError::Same));
    assert_eq!(
        s.reassign_check(1, largest + 1),
        Err(ReassignError::BadClass)
    );
    assert_eq!(s.reassign_check(-2, 1), Err(ReassignError::BadClass));
    assert_eq!(s.reassign_check(1, 2), Err(ReassignError::NoSpare));
    assert_eq!(s.reassign_check(0, 2), Err(ReassignError::NoSpare));
    // -1: no class has a page to spare yet.
    assert_eq!(s.reassign_check(-1, 2), Err(ReassignError::BadClass));
    let v = vec![b'v'; 1000];
    for i in 0..3000 {
        set(&s, format!("k{i}").as_bytes(), &v);
    }
    let class = s.class_for_item(5, 0, 1000);
    assert_eq!(s.reassign_check(-1, 2), Ok((class, 2)));
    assert_eq!(s.reassign_check(-1, largest), Ok((class, largest as u8)));
    assert_eq!(
        s.reassign_check(-1, i32::from(class)),
        Err(ReassignError::BadClass)
    );
    let off = Store::new(
        StoreConfig {
            slab_reassign: false,
            ..cfg(64)
        },
        Clock::new(),
    );
    assert_eq!(off.reassign_check(1, 2), Err(ReassignError::Disabled));
}

/// `slabs automove 0` at run time stops page moves (and `-o
/// no_slab_reassign` stops them for good): a class that needs memory
/// evicts its own items instead of taking another class's page.
#[test]
fn automove_follows_the_runtime_setting() {
    for (reassign, level, moves) in [(true, 1, true), (true, 0, false), (false, 1, false)] {
        let s = Store::new(
            StoreConfig {
                slab_reassign: reassign,
                ..cfg(8)
            },
            Clock::new(),
        );
        s.set_automove(level);
        let small = vec![b's'; 100];
        for i in 0..100_000u32 {
            set(&s, format!("s{i}").as_bytes(), &small);
        }
        let big = vec![b'b'; 5000];
        for i in 0..3000u32 {
            assert_eq!(
                set(&s, format!("b{i}").as_bytes(), &big).status,
                StoreStatus::Stored
            );
        }
        let moved = s.stats().slabs_moved;
        assert_eq!(
            moved > 0,
            moves,
            "reassign {reassign} automove {level}: {moved} moves"
        );
    }
}

/// `lru temp_ttl`, `lru mode` and `lru tune` act on the running store:
/// TEMP is used only once enabled (memcached's `temp_lru`, off by
/// default) for ttls up to the bound, flat mode links into COLD, and a
/// new HOT share is kept from then on.
#[test]
fn lru_settings_apply_at_run_time() {
    let (s, clock) = store(64);
    let now = clock.now();
    let set_ttl = |k: &[u8], ttl: u32| {
        let exp = if ttl == 0 { 0 } else { now + ttl };
        s.store(&StoreArgs::new(Mode::Set, k, 0, exp, b"v"));
        s.lru_state(k).unwrap().0
    };
    // (A lone item may leave HOT for COLD at once: HOT keeps 20%.)
    assert_ne!(set_ttl(b"a", 10), TEMP, "no TEMP LRU by default");
    s.set_temp_ttl(Some(100));
    assert_eq!(set_ttl(b"b", 10), TEMP);
    assert_eq!(set_ttl(b"c", 100), TEMP, "the bound is inclusive");
    assert_ne!(set_ttl(b"d", 101), TEMP);
    assert_ne!(set_ttl(b"e", 0), TEMP);
    let stat = |s: &Store, k: &str| -> Option<u64> {
        let items = s.stats_items();
        items
            .iter()
            .find(|(n, _)| n.ends_with(k))
            .map(|(_, v)| v.parse().unwrap())
    };
    assert_eq!(stat(&s, ":number_temp"), Some(2));
    s.set_temp_ttl(None);
    assert_ne!(set_ttl(b"f", 10), TEMP);
    assert_eq!(stat(&s, ":number_temp"), None, "shown only while in use");
    s.set_lru_segmented(false);
    let (hot, cold) = (stat(&s, ":number_hot"), stat(&s, ":number_cold").unwrap());
    for i in 0..100 {
        assert_eq!(set_ttl(format!("flat{i}").as_bytes(), 0), COLD);
    }
    assert_eq!(stat(&s, ":number_hot"), hot);
    assert_eq!(stat(&s, ":number_cold"), Some(cold + 100));

    let hot_share = |s: &Store| {
        let items = s.stats_items();
        let get = |k: &str| -> f64 {
            items
                .iter()
                .find(|(n, _)| n.ends_with(k))
                .map(|(_, v)| v.parse().unwrap())
                .unwrap()
        };
        get(":number_hot") / get(":number")
    };
    let (s, _) = store(64);
    for i in 0..6400 {
        set(&s, format!("k{i}").as_bytes(), b"v");
    }
    let before = hot_share(&s);
    assert!((0.15..=0.25).contains(&before), "hot share {before}");
    s.lru_tune(60, 10, 0.2, 2.0);
    for i in 6400..12800 {
        set(&s, format!("k{i}").as_bytes(), b"v");
    }
    let after = hot_share(&s);
    assert!(after >= 0.4, "hot share {after} after lru tune 60");
}

/// The automover takes a page from a class with spare free chunks before
/// evicting another class's old items for one, and `slab_automove_ratio`
/// decides how much older a donor's items must be.
#[test]
fn automove_prefers_spare_pages_and_follows_the_ratio() {
    let fill = |s: &Store, prefix: &str, n: u32, len: usize| {
        let v = vec![b'x'; len];
        for i in 0..n {
            let o = set(s, format!("{prefix}{i}").as_bytes(), &v);
            assert_eq!(o.status, StoreStatus::Stored);
        }
    };
    // D: old and full. A: younger, mostly deleted. B: new demand.
    let s = Store::new(cfg(16), Clock::new());
    fill(&s, "d", 3500, 1000);
    fill(&s, "a", 7000, 1000 + 200);
    for i in (0..7000).filter(|i| i % 10 < 7) {
        s.delete(&DeleteArgs::new(format!("a{i}").as_bytes()));
    }
    // About two pages more than the budget has left: fewer than A can
    // spare (it stays above 2.5 pages of free chunks for three moves).
    fill(&s, "b", 20_000, 100);
    let st = s.stats();
    assert!(st.slabs_moved > 0, "{st:?}");
    assert_eq!(st.slab_reassign_evictions_nomem, 0, "{st:?}");
    assert!(st.slab_reassign_rescues > 0, "{st:?}");
    for i in 0..3500 {
        assert!(get(&s, format!("d{i}").as_bytes()).is_ok(), "d{i} lost");
    }
    for i in (0..7000).filter(|i| i % 10 >= 7) {
        assert!(get(&s, format!("a{i}").as_bytes()).is_ok(), "a{i} lost");
    }

    // No spare anywhere: pages move only while the donor's oldest items
    // are old enough next to the receiver's.
    for (ratio, moves) in [(0.8, true), (1e-9, false)] {
        let s = Store::new(cfg(8), Clock::new());
        s.set_automove_ratio(ratio);
        // D leaves B a few pages, so B is never starving (which is
        // served whatever the ratio).
        fill(&s, "d", 5000, 1000);
        fill(&s, "b", 100_000, 100);
        let moved = s.stats().slabs_moved;
        assert_eq!(moved > 0, moves, "ratio {ratio}: {moved} pages moved");
    }
}

/// `cache_memlimit` lowered: pages above the new budget go back to the
/// system, spare ones first, and every item left keeps its value.
#[test]
fn a_lower_mem_limit_gives_pages_back() {
    let s = Store::new(cfg(32), Clock::new());
    let v = |i: u32, len: usize| -> Vec<u8> {
        let mut v = format!("{i}:").into_bytes();
        v.resize(len, b'.');
        v
    };
    for i in 0..12_000u32 {
        set(&s, format!("a{i}").as_bytes(), &v(i, 1000));
    }
    for i in 0..12_000u32 {
        set(&s, format!("b{i}").as_bytes(), &v(i, 1500));
    }
    // Half of class a is deleted: spare chunks to rescue into.
    for i in (0..12_000u32).step_by(2) {
        s.delete(&DeleteArgs::new(format!("a{i}").as_bytes()));
    }
    assert_eq!(s.stats().total_malloced, 32 << 20);
    let before = s.stats();
    s.set_mem_limit(16 << 20).unwrap();
    let mut pages = 0;
    while s.shrink_step() {
        pages += 1;
    }
    let st = s.stats();
    assert_eq!(st.total_malloced, 16 << 20, "{st:?}");
    assert_eq!(pages, 16);
    assert_eq!(st.slabs_moved - before.slabs_moved, 16);
    assert!(st.slab_reassign_rescues > 0, "{st:?}");
    assert_eq!(
        st.curr_items + st.slab_reassign_evictions_nomem - before.slab_reassign_evictions_nomem,
        before.curr_items,
        "every item is still there or was counted as evicted"
    );
    let mut left = 0;
    for (p, len) in [("a", 1000), ("b", 1500)] {
        for i in 0..12_000u32 {
            if let Ok(got) = get(&s, format!("{p}{i}").as_bytes()) {
                assert_eq!(got, v(i, len), "{p}{i}");
                left += 1;
            }
        }
    }
    assert_eq!(left, st.curr_items);
    // Within budget: nothing more to do; sets keep working.
    assert!(!s.shrink_step());
    assert_eq!(set(&s, b"new", &v(1, 1000)).status, StoreStatus::Stored);
    assert!(s.stats().total_malloced <= 16 << 20);

    let pre = Store::new(
        StoreConfig {
            prealloc: true,
            ..cfg(32)
        },
        Clock::new(),
    );
    assert_eq!(
        pre.set_mem_limit(64 << 20),
        Err(MemLimitError::Preallocated)
    );
}

/// A crawl that reclaims items sees every item exactly once, also when a
/// removal near the end of a shard's table shifts the entry in slot 0
/// back to the last slot (the index is a Robin Hood table; its backward
/// shift wraps around). Each store has its own random hash seed, so many
/// layouts are tried.
#[test]
fn a_reclaiming_crawl_sees_each_item_once() {
    for round in 0..60 {
        // Small tables, so clusters often wrap around the end.
        let clock = Clock::new();
        let s = Store::new(
            StoreConfig {
                hashpower_init: 10,
                ..cfg(8)
            },
            clock.clone(),
        );
        for i in 0..3000u32 {
            let exp = if i % 2 == 0 { clock.now() + 10 } else { 0 };
            s.store(&StoreArgs::new(
                Mode::Set,
                format!("k{i}").as_bytes(),
                0,
                exp,
                b"v",
            ));
        }
        clock.advance(11);
        let mut c = Crawl::new(u64::MAX, 0);
        while s.crawl_step(&mut c) {}
        assert_eq!(
            (c.tally.checked, c.tally.reclaimed),
            (3000, 1500),
            "round {round}"
        );
        let mut seen = 0;
        let mut w = Walk::new(u64::MAX);
        while s.dump_step(&mut w, |_| seen += 1) {}
        assert_eq!(seen, 1500, "round {round}");
    }
}

#[test]
fn idle_maintenance_moves_aged_items_out_of_hot_like_memcached() {
    let (s, clock) = store(8);
    for i in 0..1000u32 {
        set(&s, format!("k{i}").as_bytes(), b"v");
    }
    let seg = |s: &Store, name: &str| -> u64 {
        let key = format!("items:1:{name}");
        s.stats_items()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map_or(0, |(_, v)| v.parse().unwrap())
    };
    let hot = seg(&s, "number_hot");
    assert!(hot > 0, "sets land in HOT");
    // Same second: nothing is old enough, and HOT is within its share.
    s.maintain();
    assert_eq!(seg(&s, "number_hot"), hot);
    // A second later every HOT item is older than 0.2 x the COLD tail's
    // age (1 s, truncated to 0 in memcached): all go to COLD.
    clock.advance(1);
    s.maintain();
    assert_eq!(seg(&s, "number_hot"), 0);
    assert_eq!(seg(&s, "number_cold"), 1000);
    assert_eq!(s.stats().moves_to_cold, 1000);
    // A hit item moves to WARM instead (it is ACTIVE once hit twice).
    set(&s, b"hot", b"v");
    assert!(get(&s, b"hot").is_ok());
    assert!(get(&s, b"hot").is_ok());
    clock.advance(1);
    s.maintain();
    assert_eq!(seg(&s, "number_warm"), 1);
    assert_eq!(seg(&s, "number_hot"), 0);
}

/// The maintainer reclaims the dead items a single LRU per class would
/// have at its tail (memcached's `lru_pull_tail` on each juggle), in
/// every shard, and no further: dead items behind an older live one
/// wait for an access, an allocation or the crawler.
#[test]
fn maintenance_reclaims_the_dead_run_at_the_tails() {
    let (s, clock) = store(64);
    // 300 items that expire, then 100 that live: spread over every shard.
    let exp = clock.now() + 2;
    for i in 0..300 {
        assert_eq!(
            set_until(&s, &format!("dead{i}"), exp).status,
            StoreStatus::Stored
        );
    }
    for i in 0..100 {
        assert_eq!(
            set_until(&s, &format!("live{i}"), 0).status,
            StoreStatus::Stored
        );
    }
    s.maintain();
    assert_eq!((s.stats().curr_items, s.stats().reclaimed), (400, 0));
    clock.advance(3);
    s.maintain();
    let st = s.stats();
    assert_eq!(st.curr_items, 100);
    assert_eq!(st.reclaimed, 300);
    assert_eq!(st.expired_unfetched, 300);
    for i in 0..100 {
        assert!(get(&s, format!("live{i}").as_bytes()).is_ok());
    }

    // Live and dead in turn: only the oldest dead item is at the tail of
    // the single list; the others stay (and a get finds them expired).
    let (s, clock) = store(64);
    let exp = clock.now() + 2;
    for i in 0..400 {
        set_until(&s, &format!("k{i}"), if i % 2 == 0 { exp } else { 0 });
    }
    clock.advance(3);
    s.maintain();
    assert_eq!(s.stats().reclaimed, 1);
    assert_eq!(s.stats().curr_items, 399);
    assert_eq!(get(&s, b"k0"), Err(Miss::NotFound));
    assert_eq!(get(&s, b"k2"), Err(Miss::Expired));

    // After flush_all every item is dead: all go.
    s.flush(clock.now());
    clock.advance(1);
    s.maintain();
    assert_eq!(s.stats().curr_items, 0);
    assert_eq!(s.stats().reclaimed, 399);

    // A flat LRU (all COLD) is left to allocations, as memcached's
    // maintainer does not pull COLD then.
    let (s, clock) = store(64);
    s.set_lru_segmented(false);
    let exp = clock.now() + 1;
    for i in 0..50 {
        set_until(&s, &format!("f{i}"), exp);
    }
    clock.advance(2);
    s.maintain();
    assert_eq!(s.stats().reclaimed, 0);
    assert_eq!(s.stats().curr_items, 50);
}

/// A wave of expiries larger than one round (512 per shard and tail) is
/// gone after one maintenance pass.
#[test]
fn maintenance_reclaims_a_large_wave_in_one_pass() {
    let (s, clock) = store(64);
    let exp = clock.now() + 1;
    for i in 0..100_000 {
        set_until(&s, &format!("w{i}"), exp);
    }
    set(&s, b"live", b"v");
    clock.advance(2);
    s.maintain();
    assert_eq!(s.stats().reclaimed, 100_000);
    assert_eq!(s.stats().curr_items, 1);
}
