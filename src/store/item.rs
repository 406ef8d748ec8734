//! Item layout: a 32-byte header, the client flags (4 bytes, only when
//! nonzero), the key, then the value, stored in place in one slab chunk
//! (or, above `slab_chunk_max`, a chain of chunks).
//!
//! The header is small because the LRU links are 32-bit chunk references
//! rather than pointers, the times are 32-bit relative seconds, all
//! per-item state bits (LRU segment, fetched, active, stale, win token
//! sent, flags present) share two bytes, the hash index keeps its own
//! links outside item memory (`index`), and zero client flags, the common
//! case, take no room at all (memcached's `ITEM_CFLAGS` does the same).
//! memcached spends 56 bytes on the same information; at a 132-byte
//! payload the 24 bytes saved are about 12% of the cache.
//!
//! Chained item (total size above the largest chunk): the head chunk holds
//! header, flags, key, the `Ref` of the next chunk (4 bytes, unaligned) and
//! the first part of the value; every following chunk starts with the next
//! `Ref` and 4 bytes of padding, then more value. All chunks of a chain are
//! of the largest class.

use super::slab::{Ref, Slabs, NULL};

/// The fixed part of every item. `repr(C)` so its size and offsets are
/// pinned (see the `size_of` test); chunk starts are 8-aligned, so the
/// header can be read in place.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    /// Internal version; unique per store. Clients see it as the CAS
    /// unless CAS is disabled.
    pub cas: u64,
    /// LRU neighbours (toward head / toward tail).
    pub prev: Ref,
    pub next: Ref,
    pub exptime: u32,
    /// Last access time (memcached's `it->time`; also what a delayed
    /// flush compares against).
    pub atime: u32,
    /// Value length in bytes.
    pub nbytes: u32,
    pub nkey: u8,
    pub class: u8,
    /// `BIT_*` flags.
    pub bits: u8,
    /// LRU segment (`HOT`..`TEMP`).
    pub seg: u8,
}

pub(crate) const HDR: usize = std::mem::size_of::<Header>();

pub(crate) const BIT_FETCHED: u8 = 1;
pub(crate) const BIT_ACTIVE: u8 = 2;
pub(crate) const BIT_STALE: u8 = 4;
pub(crate) const BIT_WIN: u8 = 8;
pub(crate) const BIT_CHAINED: u8 = 16;
pub(crate) const BIT_LINKED: u8 = 32;
/// The key was sent base64-encoded (meta `b`).
pub(crate) const BIT_BINKEY: u8 = 64;
/// Nonzero client flags follow the header.
pub(crate) const BIT_CFLAGS: u8 = 128;

/// Bytes of a continuation chunk used before its data.
pub(crate) const CONT_HDR: usize = 8;

/// Bytes before the key: the header, and the flags when nonzero.
#[inline]
pub(crate) fn key_offset(flags: u32) -> usize {
    HDR + if flags != 0 { 4 } else { 0 }
}

/// Total bytes an item of this key, flags and value needs when it fits
/// one chunk (header + flags + key + value).
#[inline]
pub(crate) fn ntotal(nkey: usize, flags: u32, nbytes: usize) -> usize {
    key_offset(flags) + nkey + nbytes
}

/// How many chunks of `chunk_max` bytes a chained item needs.
pub(crate) fn chain_len(nkey: usize, flags: u32, nbytes: usize, chunk_max: usize) -> usize {
    let head_cap = chunk_max - key_offset(flags) - nkey - 4;
    if nbytes <= head_cap {
        return 1;
    }
    1 + (nbytes - head_cap).div_ceil(chunk_max - CONT_HDR)
}

/// A handle on an allocated chunk holding an item.
///
/// Invariant: an `Item` is only made from a chunk that is allocated and
/// holds an item header; it may be read or written only by a thread that
/// either owns the chunk exclusively (filled but not yet linked) or holds
/// the lock of the shard the item is linked in. Both rules together mean
/// there is never a concurrent write to item memory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Item {
    p: *mut Header,
    pub r: Ref,
}

impl Item {
    #[inline]
    pub(crate) fn at(slabs: &Slabs, r: Ref) -> Item {
        Item {
            p: slabs.ptr(r).cast(),
            r,
        }
    }

    #[inline]
    pub(crate) fn h(&self) -> &Header {
        // SAFETY: see the type invariant; the pointer is 8-aligned.
        unsafe { &*self.p }
    }

    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn hm(&self) -> &mut Header {
        // SAFETY: see the type invariant: the caller is the only one
        // allowed to touch this item right now.
        unsafe { &mut *self.p }
    }

    #[inline]
    fn base(&self) -> *mut u8 {
        self.p.cast()
    }

    pub(crate) fn chained(&self) -> bool {
        self.h().bits & BIT_CHAINED != 0
    }

    #[inline]
    fn key_off(&self) -> usize {
        if self.h().bits & BIT_CFLAGS != 0 {
            HDR + 4
        } else {
            HDR
        }
    }

    /// The client flags (0 unless stored after the header).
    #[inline]
    pub(crate) fn flags(&self) -> u32 {
        if self.h().bits & BIT_CFLAGS == 0 {
            return 0;
        }
        // SAFETY: `BIT_CFLAGS` items hold 4 flag bytes right after the
        // header (8-aligned chunk + 32: aligned, read unaligned anyway).
        unsafe { (self.base().add(HDR) as *const u32).read_unaligned() }
    }

    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        // SAFETY: the key is `nkey` bytes right after header and flags.
        unsafe {
            std::slice::from_raw_parts(self.base().add(self.key_off()), self.h().nkey as usize)
        }
    }

    /// Bytes this item accounts for (memcached's `ITEM_ntotal`).
    pub(crate) fn ntotal(&self) -> usize {
        self.key_off() + self.h().nkey as usize + self.h().nbytes as usize
    }

    /// Where a chained item keeps the ref of its second chunk.
    fn chain_link(&self) -> *mut u8 {
        // SAFETY: chained items store the ref right after the key, inside
        // the head chunk.
        unsafe { self.base().add(self.key_off() + self.h().nkey as usize) }
    }

    /// First chunk of the chain after the head (chained items only).
    fn next_chunk(&self) -> Ref {
        // SAFETY: see `chain_link`.
        unsafe { (self.chain_link() as *const u32).read_unaligned() }
    }

    fn set_next_chunk(&self, r: Ref) {
        // SAFETY: see `chain_link`.
        unsafe { (self.chain_link() as *mut u32).write_unaligned(r) }
    }

    /// Start of the value in the head chunk and how many value bytes the
    /// head chunk holds.
    fn head_data(&self, chunk_max: usize) -> (*mut u8, usize) {
        let off = self.key_off() + self.h().nkey as usize;
        let n = self.h().nbytes as usize;
        if self.chained() {
            let off = off + 4;
            // SAFETY: within the head chunk.
            (unsafe { self.base().add(off) }, n.min(chunk_max - off))
        } else {
            // SAFETY: within the chunk (ntotal <= chunk size).
            (unsafe { self.base().add(off) }, n)
        }
    }

    /// Write a fresh header and key into an owned chunk.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn init(
        &self,
        key: &[u8],
        flags: u32,
        exptime: u32,
        nbytes: usize,
        class: u8,
        chained: bool,
        now: u32,
    ) {
        let mut bits = if chained { BIT_CHAINED } else { 0 };
        if flags != 0 {
            bits |= BIT_CFLAGS;
        }
        *self.hm() = Header {
            cas: 0,
            prev: NULL,
            next: NULL,
            exptime,
            atime: now,
            nbytes: nbytes as u32,
            nkey: key.len() as u8,
            class,
            bits,
            seg: 0,
        };
        // SAFETY: the chunk has room for header + flags + key (the
        // allocator's size computation used `ntotal` with these flags);
        // the key does not overlap the chunk.
        unsafe {
            if flags != 0 {
                (self.base().add(HDR) as *mut u32).write_unaligned(flags);
            }
            std::ptr::copy_nonoverlapping(key.as_ptr(), self.base().add(self.key_off()), key.len());
        }
    }

    /// Segments of the value, in order.
    pub(crate) fn segments<'a>(&self, slabs: &'a Slabs) -> Segments<'a> {
        let cm = slabs.chunk_max();
        let (p, n) = self.head_data(cm);
        Segments {
            slabs,
            cur: p,
            cur_len: n,
            next: if self.chained() {
                self.next_chunk()
            } else {
                NULL
            },
            left: self.h().nbytes as usize,
            _item: std::marker::PhantomData,
        }
    }

    /// Copy `data` into the value at byte `offset`, across chunks.
    pub(crate) fn write_value(&self, slabs: &Slabs, offset: usize, data: &[u8]) {
        let mut off = offset;
        let mut src = data;
        let mut seg_start = 0usize;
        let mut segs = self.segments(slabs);
        while !src.is_empty() {
            let Some((p, len)) = segs.next_raw() else {
                return;
            };
            let seg_end = seg_start + len;
            if off < seg_end {
                let at = off - seg_start;
                let n = (len - at).min(src.len());
                // SAFETY: in-bounds of this segment of an owned item.
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p.add(at), n) };
                src = &src[n..];
                off += n;
            }
            seg_start = seg_end;
        }
    }

    /// The unwritten room of the value segment that holds byte `offset`:
    /// its start and length, up to the end of that segment. `None` at or
    /// past the end of the value.
    pub(crate) fn value_room(&self, slabs: &Slabs, offset: usize) -> Option<(*mut u8, usize)> {
        let mut seg_start = 0usize;
        let mut segs = self.segments(slabs);
        while let Some((p, len)) = segs.next_raw() {
            if offset < seg_start + len {
                let at = offset - seg_start;
                // SAFETY: `at < len`: inside this segment.
                return Some((unsafe { p.add(at) }, len - at));
            }
            seg_start += len;
        }
        None
    }

    /// Link continuation chunks (chained items): `refs` in order.
    pub(crate) fn set_chain(&self, slabs: &Slabs, refs: &[Ref]) {
        self.set_next_chunk(refs.first().copied().unwrap_or(NULL));
        for (i, &r) in refs.iter().enumerate() {
            let next = refs.get(i + 1).copied().unwrap_or(NULL);
            // SAFETY: continuation chunks are owned with the head.
            unsafe { (slabs.ptr(r) as *mut u32).write(next) };
        }
    }

    /// Move the continuation chunks `pick` selects into chunks `alloc`
    /// hands out: each chunk is copied whole (its link and data) and the
    /// link that pointed at it is repointed, then `free` gets the old one.
    /// Returns how many moved; `Err` (with that count) when `alloc` had
    /// nothing for a chunk, which is left where it was. The caller owns
    /// the item as `Item` requires and no picked chunk is the head.
    pub(crate) fn move_chunks(
        &self,
        slabs: &Slabs,
        mut pick: impl FnMut(Ref) -> bool,
        mut alloc: impl FnMut() -> Option<Ref>,
        mut free: impl FnMut(Ref),
    ) -> Result<u32, u32> {
        if !self.chained() {
            return Ok(0);
        }
        let mut link = self.chain_link().cast::<u32>();
        let mut moved = 0;
        loop {
            // SAFETY: `link` is the head's chain link or the first word of
            // a continuation chunk of this item (see `set_chain`).
            let r = unsafe { link.read_unaligned() };
            if r == NULL {
                return Ok(moved);
            }
            let cur = if pick(r) {
                let Some(nr) = alloc() else {
                    return Err(moved);
                };
                // SAFETY: `nr` is a fresh chunk of the chunk-max class,
                // not `r`, and both are `chunk_max` bytes; the link is
                // ours to write (see above).
                unsafe {
                    std::ptr::copy_nonoverlapping(slabs.ptr(r), slabs.ptr(nr), slabs.chunk_max());
                    link.write_unaligned(nr);
                }
                free(r);
                moved += 1;
                nr
            } else {
                r
            };
            link = slabs.ptr(cur).cast::<u32>();
        }
    }

    /// Visit every continuation chunk (for freeing).
    pub(crate) fn chain_refs(&self, slabs: &Slabs, mut f: impl FnMut(Ref)) {
        if !self.chained() {
            return;
        }
        let mut r = self.next_chunk();
        while r != NULL {
            // SAFETY: read the next link before the caller frees `r`.
            let next = unsafe { (slabs.ptr(r) as *const u32).read() };
            f(r);
            r = next;
        }
    }
}

/// Iterator over the value's segments (one for unchained items).
pub struct Segments<'a> {
    slabs: &'a Slabs,
    cur: *mut u8,
    cur_len: usize,
    next: Ref,
    left: usize,
    _item: std::marker::PhantomData<&'a [u8]>,
}

impl<'a> Segments<'a> {
    fn next_raw(&mut self) -> Option<(*mut u8, usize)> {
        if self.left == 0 || self.cur.is_null() {
            return None;
        }
        let out = (self.cur, self.cur_len);
        self.left -= self.cur_len;
        if self.left > 0 && self.next != NULL {
            let base = self.slabs.ptr(self.next);
            // SAFETY: a continuation chunk: next ref, padding, data.
            let nn = unsafe { (base as *const u32).read() };
            // SAFETY: data follows the 8-byte continuation header.
            self.cur = unsafe { base.add(CONT_HDR) };
            self.cur_len = self.left.min(self.slabs.chunk_max() - CONT_HDR);
            self.next = nn;
        } else {
            self.cur = std::ptr::null_mut();
        }
        Some(out)
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (p, n) = self.next_raw()?;
        // SAFETY: the segment lies in item memory that the borrow of the
        // owning `ItemRef` (under the shard lock) keeps alive.
        Some(unsafe { std::slice::from_raw_parts(p, n) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::slab::ClassSpec;

    const GROW: ClassSpec<'static> = ClassSpec::Grow {
        min_item: 88,
        factor: 1.25,
    };

    #[test]
    fn header_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Header>(), 32);
        assert_eq!(std::mem::align_of::<Header>(), 8);
        assert_eq!(HDR, 32);
    }

    #[test]
    fn target_item_is_164_bytes() {
        // 32-byte key + 100-byte value, flags 0 (memcached: 191 bytes);
        // nonzero flags cost 4 more (memcached: 4 more too).
        assert_eq!(ntotal(32, 0, 100), 164);
        assert_eq!(ntotal(32, 9, 100), 168);
    }

    #[test]
    fn chain_len_counts_chunks() {
        let cm = 1024;
        // head holds 1024 - 32 (header) - 10 (key) - 4 (link) = 978 bytes.
        assert_eq!(chain_len(10, 0, 978, cm), 1);
        assert_eq!(chain_len(10, 0, 979, cm), 2);
        assert_eq!(chain_len(10, 0, 978 + 1016, cm), 2);
        assert_eq!(chain_len(10, 0, 978 + 1017, cm), 3);
        // Flags take 4 bytes of the head chunk.
        assert_eq!(chain_len(10, 1, 974, cm), 1);
        assert_eq!(chain_len(10, 1, 975, cm), 2);
    }

    #[test]
    fn chained_value_roundtrip() {
        let s = Slabs::new(1 << 16, 4 << 16, GROW, 1024).unwrap();
        let big = s.largest;
        let key = b"chained-key";
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let n = chain_len(key.len(), 7, data.len(), s.chunk_max());
        let refs: Vec<Ref> = (0..n).map(|_| s.alloc(big).unwrap()).collect();
        let it = Item::at(&s, refs[0]);
        it.init(key, 7, 0, data.len(), big, true, 5);
        it.set_chain(&s, &refs[1..]);
        it.write_value(&s, 0, &data[..100]);
        it.write_value(&s, 100, &data[100..]);
        let got: Vec<u8> = it.segments(&s).flatten().copied().collect();
        assert_eq!(got, data);
        assert_eq!(it.key(), key);
        assert_eq!(it.flags(), 7);
        let mut seen = Vec::new();
        it.chain_refs(&s, |r| seen.push(r));
        assert_eq!(seen, refs[1..].to_vec());
    }

    #[test]
    fn single_chunk_value_roundtrip() {
        let s = Slabs::new(1 << 16, 4 << 16, GROW, 1024).unwrap();
        let id = s.class_for(ntotal(3, 1, 10));
        let it = Item::at(&s, s.alloc(id).unwrap());
        it.init(b"abc", 1, 2, 10, id, false, 3);
        it.write_value(&s, 0, b"0123456789");
        let segs: Vec<&[u8]> = it.segments(&s).collect();
        assert_eq!(segs, vec![&b"0123456789"[..]]);
        assert_eq!(it.flags(), 1);
        assert_eq!(it.key(), b"abc");
        assert_eq!(it.h().exptime, 2);
        // Zero flags take no room: the key starts right after the header.
        let z = Item::at(&s, s.alloc(id).unwrap());
        z.init(b"xyz", 0, 0, 10, id, false, 3);
        z.write_value(&s, 0, b"9876543210");
        assert_eq!((z.flags(), z.key(), z.ntotal()), (0, &b"xyz"[..], HDR + 13));
        assert_eq!(z.segments(&s).next(), Some(&b"9876543210"[..]));
    }
}
