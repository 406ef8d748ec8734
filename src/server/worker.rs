//! A worker thread: one mio `Poll`, its own listeners, its connections.
//!
//! Nothing here is shared with other workers except the `Shared` state
//! (store, settings, connection counters), so a worker never waits on
//! another to accept, read, run or write. Readiness is edge-triggered:
//! a connection that still has work when its turn ends (the `-R` budget
//! ran out) is put on the `ready` list and revisited after the next poll
//! instead of waiting for an event that will not come.

use std::io::{self, IoSliceMut, Read};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::config::Protocol;
use crate::exec::out::Out;
use crate::exec::text::Progress;
use crate::exec::{Action, Ctx, Shared, StopRequest};
use crate::stats::{ConnEntry, ConnState, ThreadStats};

use super::bufpool::BufPool;
use super::conn::{Conn, Stream};
use super::tls::TlsContext;

const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 1024;
/// Tokens of the UDP sockets (`-U`), below the listeners'.
const UDP_BASE: usize = LISTENER_BASE - 1024;
/// Size of the shared read buffer; also the read size for split requests.
const READ_CHUNK: usize = 64 * 1024;
/// A partial request whose known size exceeds what is buffered by at
/// least this much reads the rest straight into the connection's buffer,
/// skipping the copy out of the scratch buffer. Below it, a read into the
/// scratch buffer also picks up the requests pipelined behind, for the
/// price of copying a small tail twice.
const DIRECT_MIN: usize = 1024;
/// Stop running requests for a connection once this much output waits,
/// and send it first.
const OUT_LIMIT: usize = 1024 * 1024;
/// When a request ends its connection (`Conn::closing`), at most this much
/// unread input is dropped before the close, so that the close sends a FIN
/// after the last reply rather than a reset that loses it
/// (`Stream::discard_unread`); past it a flooding client gets the reset.
/// Other closes (end of input, socket errors) have nothing to drop.
const DISCARD_ON_CLOSE: usize = 4 * 1024 * 1024;
const REJECT_MSG: &[u8] = b"ERROR Too many open connections\r\n";

/// A listener a worker accepts from, and the protocol its connections
/// may speak (`-B`, or the `-l` entry's `proto[...]:`).
pub struct Listener {
    pub socket: ListenSocket,
    pub protocol: Protocol,
}

/// The kinds of listening socket.
pub enum ListenSocket {
    Tcp(TcpListener),
    /// TCP whose connections speak TLS (`-Z`, without `notls:`).
    Tls(TcpListener, Arc<TlsContext>),
    Unix(UnixListener),
}

/// A worker's UDP socket (`-U`) and the protocol its datagrams speak.
pub struct UdpListener {
    pub socket: mio::net::UdpSocket,
    pub protocol: Protocol,
}

impl Listener {
    /// Whether a connection waits to be accepted, without taking it.
    fn pending(&self) -> bool {
        let fd = match &self.socket {
            ListenSocket::Tcp(l) | ListenSocket::Tls(l, _) => l.as_raw_fd(),
            ListenSocket::Unix(l) => l.as_raw_fd(),
        };
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a zero timeout; `fd` stays open (the
        // listener is borrowed) for the call.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n == 1 && p.revents & libc::POLLIN != 0
    }
}

pub struct Worker {
    id: usize,
    poll: Poll,
    listeners: Vec<Listener>,
    udp: Vec<UdpListener>,
    conns: Slab<Conn>,
    shared: Arc<Shared>,
    stats: Arc<ThreadStats>,
    rbuf: Vec<u8>,
    /// Replies of the current batch (values may stay in item memory).
    wbuf: Out,
    /// Emptied large input buffers, for the next large request.
    pool: BufPool,
    ready: Requeue,
    /// UDP sockets (indexes into `udp`) that still had datagrams when
    /// their per-turn budget ran out; served again after the next poll.
    udp_ready: Requeue,
    running: Arc<AtomicBool>,
    /// accept() failed for lack of descriptors: retry soon.
    accept_backoff: bool,
    /// memcached-style names of the listeners (`tcp:ip:port`), by index.
    listener_names: Vec<String>,
    /// Connections that became `watch` streams (connection key, handle).
    watchers: Vec<(usize, crate::exec::watch::Watcher)>,
}

/// Handle to stop a worker from another thread.
pub struct WorkerHandle {
    pub waker: Arc<Waker>,
    pub running: Arc<AtomicBool>,
}

impl WorkerHandle {
    pub fn stop(&self) {
        self.running.store(false, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

impl Worker {
    pub fn new(
        id: usize,
        listeners: Vec<Listener>,
        udp: Vec<UdpListener>,
        shared: Arc<Shared>,
    ) -> io::Result<(Worker, WorkerHandle)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let running = Arc::new(AtomicBool::new(true));
        let stats = Arc::clone(&shared.threads[id % shared.threads.len()]);
        let mut listener_names = Vec::new();
        for l in &listeners {
            let (name, fd) = match &l.socket {
                ListenSocket::Tcp(l) | ListenSocket::Tls(l, _) => (
                    l.local_addr()
                        .map(crate::stats::tcp_addr)
                        .unwrap_or_default(),
                    l.as_raw_fd(),
                ),
                ListenSocket::Unix(l) => (
                    l.local_addr()
                        .ok()
                        .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                        .unwrap_or_default(),
                    l.as_raw_fd(),
                ),
            };
            shared.conn_table.insert(
                fd,
                Arc::new(ConnEntry {
                    addr: name.clone(),
                    listen_addr: None,
                    last_cmd: AtomicU32::new(shared.clock.now()),
                    state: AtomicU8::new(ConnState::Read as u8),
                }),
            );
            listener_names.push(name);
        }
        // The scratch buffer is this worker's standing read buffer, free
        // between reads.
        stats.read_bufs.change((0, true), (READ_CHUNK, true));
        let mut w = Worker {
            listener_names,
            id,
            poll,
            listeners,
            udp,
            conns: Slab::new(),
            shared,
            pool: BufPool::new(Arc::clone(&stats)),
            stats,
            rbuf: vec![0; READ_CHUNK],
            wbuf: Out::with_capacity(READ_CHUNK),
            ready: Requeue::with_capacity(64),
            udp_ready: Requeue::with_capacity(8),
            running: Arc::clone(&running),
            accept_backoff: false,
            watchers: Vec::new(),
        };
        for (i, l) in w.listeners.iter_mut().enumerate() {
            let t = Token(LISTENER_BASE + i);
            match &mut l.socket {
                ListenSocket::Tcp(l) | ListenSocket::Tls(l, _) => {
                    w.poll.registry().register(l, t, Interest::READABLE)?
                }
                ListenSocket::Unix(l) => w.poll.registry().register(l, t, Interest::READABLE)?,
            }
        }
        for (i, u) in w.udp.iter_mut().enumerate() {
            let t = Token(UDP_BASE + i);
            w.poll
                .registry()
                .register(&mut u.socket, t, Interest::READABLE)?;
        }
        Ok((w, WorkerHandle { waker, running }))
    }

    /// Run until stopped.
    /// Serve up to `-R` datagrams from UDP socket `i`; when more wait, come
    /// back after the next poll so a UDP flood cannot starve this worker's
    /// TCP connections (readiness is edge-triggered: no new event would
    /// announce the datagrams left behind).
    fn serve_udp(&mut self, i: usize) {
        let ctx = Ctx {
            shared: &self.shared,
            stats: &self.stats,
        };
        let budget = self.shared.settings.reqs_per_event.max(1);
        // A datagram reply is framed from its bytes.
        self.wbuf.set_splicing(false);
        let u = &self.udp[i];
        let more = super::udp::serve(
            &u.socket,
            u.protocol,
            &ctx,
            &mut self.rbuf,
            &mut self.wbuf,
            budget,
        );
        if more && !self.udp_ready.next.contains(&i) {
            self.udp_ready.next.push(i);
        }
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut last_idle_check = self.shared.clock.now();
        while self.running.load(Ordering::Relaxed) {
            let timeout = if !self.ready.next.is_empty() || !self.udp_ready.next.is_empty() {
                Duration::ZERO
            } else if self.accept_backoff {
                Duration::from_millis(10)
            } else if !self.watchers.is_empty() {
                Duration::from_millis(crate::exec::watch::DRAIN_MS)
            } else {
                Duration::from_millis(1000)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("worker {}: poll failed: {}", self.id, e);
                break;
            }
            for ev in events.iter() {
                let t = ev.token().0;
                if ev.token() == WAKER {
                    continue;
                }
                if t >= LISTENER_BASE {
                    self.accept(t - LISTENER_BASE);
                } else if t >= UDP_BASE {
                    self.serve_udp(t - UDP_BASE);
                } else {
                    // Edge-triggered: when this event also reports the
                    // peer's shutdown (EPOLLRDHUP/HUP) or an error, no
                    // later event will, so `drive` must read until the
                    // socket says so (EOF, error or EAGAIN).
                    self.drive(t, ev.is_read_closed() || ev.is_error());
                }
            }
            if self.accept_backoff {
                self.accept_backoff = false;
                for i in 0..self.listeners.len() {
                    self.accept(i);
                }
            }
            let mut ready = self.ready.take();
            for &key in &ready {
                // No event to go by: read until EAGAIN, as before.
                self.drive(key, true);
            }
            self.ready.give_back(&mut ready);
            let mut udp_ready = self.udp_ready.take();
            for &i in &udp_ready {
                self.serve_udp(i);
            }
            self.udp_ready.give_back(&mut udp_ready);
            if !self.watchers.is_empty() {
                self.drain_watchers();
            }
            let now = self.shared.clock.now();
            if now != last_idle_check {
                last_idle_check = now;
                self.close_idle(now);
            }
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.close(k);
        }
    }

    fn accept(&mut self, idx: usize) {
        let max = self.shared.settings.max_conns;
        loop {
            // `no_maxconns_fast`: at the limit, leave new connections
            // waiting in the listen backlog (memcached turns its
            // listeners off) and look again in 10 ms. Listening counts as
            // disabled only once a client is waiting, as memcached only
            // notices at the accept that fails.
            if !self.shared.settings.maxconns_fast
                && self.shared.conns.curr_conns.load(Ordering::Acquire) >= max
            {
                if self.listeners[idx].pending() {
                    self.shared.conns.stop_accepting();
                    self.accept_backoff = true;
                }
                return;
            }
            let protocol = self.listeners[idx].protocol;
            let accepted = match &self.listeners[idx].socket {
                ListenSocket::Tcp(l) => l.accept().map(|(s, peer)| {
                    let _ = s.set_nodelay(true);
                    (Stream::Tcp(s), crate::stats::tcp_addr(peer))
                }),
                ListenSocket::Tls(l, ctx) => match l.accept() {
                    Ok((s, peer)) => {
                        let _ = s.set_nodelay(true);
                        match ctx.accept(s) {
                            Ok(t) => Ok((Stream::Tls(Box::new(t)), crate::stats::tcp_addr(peer))),
                            Err(e) => {
                                // The socket is dropped (closed) here.
                                log::info!("worker {}: TLS session not created: {}", self.id, e);
                                continue;
                            }
                        }
                    }
                    Err(e) => Err(e),
                },
                ListenSocket::Unix(l) => l
                    .accept()
                    .map(|(s, _)| (Stream::Unix(s), "?:<AF 0>".into())),
            };
            let (mut stream, peer) = match accepted {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE/ENFILE and friends: keep serving, retry soon.
                    log::warn!("worker {}: accept failed: {}", self.id, e);
                    self.shared.conns.stop_accepting();
                    self.accept_backoff = true;
                    return;
                }
            };
            let conns = &self.shared.conns;
            conns.resume_accepting();
            let curr = conns.curr_conns.fetch_add(1, Ordering::AcqRel);
            // With `no_maxconns_fast` only a race between workers for the
            // last place gets here. A refused connection is not counted in
            // `total_connections` (memcached closes it before it makes a
            // connection of it).
            if curr >= max {
                conns.curr_conns.fetch_sub(1, Ordering::AcqRel);
                conns.rejected_conns.fetch_add(1, Ordering::Relaxed);
                use std::io::Write;
                let _ = stream.write(REJECT_MSG);
                continue;
            }
            conns.total_conns.fetch_add(1, Ordering::Relaxed);
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            if key >= UDP_BASE {
                conns.curr_conns.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::warn!("worker {}: register failed: {}", self.id, e);
                conns.curr_conns.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            conns.peak_conns.fetch_max(curr + 1, Ordering::Relaxed);
            let now = self.shared.clock.now();
            let info = Arc::new(ConnEntry {
                addr: peer,
                listen_addr: Some(self.listener_names[idx].clone()),
                last_cmd: AtomicU32::new(now),
                state: AtomicU8::new(ConnState::NewCmd as u8),
            });
            let fd = stream.fd();
            crate::exec::watch::conn_new(&info.addr, fd);
            self.shared.conn_table.insert(fd, Arc::clone(&info));
            entry.insert(Conn::new(stream, now, info, fd, protocol));
            log::debug!("worker {}: new connection {}", self.id, key);
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(mut c) = self.conns.try_remove(key) {
            crate::exec::watch::conn_close(&c.entry.addr, "normal", c.fd);
            self.watchers.retain(|w| w.0 != key);
            self.shared.conn_table.remove(c.fd);
            self.stats.read_bufs.change(c.input.footprint(), (0, true));
            c.input.release(&mut self.pool);
            c.pending.release_held(&self.shared.store);
            c.session.abandon(&self.shared.store);
            c.stream.shutdown();
            if c.closing {
                let dropped = c.stream.discard_unread(&mut self.rbuf, DISCARD_ON_CLOSE);
                self.stats.ops.bytes_read.add(dropped as u64);
            }
            let _ = self.poll.registry().deregister(&mut c.stream);
            self.shared.conns.curr_conns.fetch_sub(1, Ordering::AcqRel);
            log::debug!("worker {}: closed connection {}", self.id, key);
        }
    }

    /// A watcher connection: its input is ignored; end of input closes it.
    fn drive_watcher(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        loop {
            match conn.stream.read(&mut self.rbuf[..]) {
                Ok(0) => return self.close(key),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.close(key),
            }
        }
    }

    /// Move the lines waiting for this worker's watchers to their sockets.
    /// A watcher whose socket is still full gets nothing more this turn,
    /// so its rings fill and the producers skip (never wait).
    fn drain_watchers(&mut self) {
        let mut i = 0;
        while i < self.watchers.len() {
            let key = self.watchers[i].0;
            i += 1;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.has_output() {
                match conn.flush_pending(&self.shared.store) {
                    Ok(n) => self.stats.ops.bytes_written.add(n as u64),
                    Err(_) => {
                        self.close(key);
                        i -= 1;
                        continue;
                    }
                }
                if conn.has_output() {
                    continue;
                }
            }
            // memcached's per-watcher write buffer: at most this much
            // goes out per drain; what waits longer in the rings is
            // skipped once they fill.
            let batch = (self.shared.settings.watcher_logbuf_size as usize).max(1);
            self.watchers[i - 1].1.drain(&mut self.wbuf, batch);
            if self.wbuf.is_empty() {
                continue;
            }
            let r = conn.send(&self.wbuf, &self.shared.store);
            self.wbuf.clear();
            match r {
                Ok(n) => self.stats.ops.bytes_written.add(n as u64),
                Err(_) => {
                    self.close(key);
                    i -= 1;
                }
            }
        }
    }

    fn close_idle(&mut self, now: u32) {
        let timeout = self.shared.settings.idle_timeout;
        if timeout == 0 {
            return;
        }
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| now.saturating_sub(c.last_active) > timeout)
            .map(|(k, _)| k)
            .collect();
        for k in idle {
            self.close(k);
        }
    }

    /// Do everything a connection can do now: write what is pending, read,
    /// run requests, write replies.
    ///
    /// `read_to_eagain`: keep reading until the socket returns EAGAIN,
    /// EOF or an error. When false, a read that returns less than asked
    /// for ends the turn instead: on a TCP or unix stream a short read
    /// means the receive queue was empty at that moment, and data (or a
    /// FIN) arriving later raises a new edge-triggered event. This saves
    /// the read that returns EAGAIN after every request of a client that
    /// waits for its reply (one recvfrom in three syscalls per request
    /// unpipelined; memcached stops the same way). The caller passes true
    /// when the event already reported the peer's shutdown (its FIN may
    /// be queued right behind the data, with no new event to come) and
    /// when there is no event at all (the ready list).
    fn drive(&mut self, key: usize, read_to_eagain: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.has_output() {
            match conn.flush_pending(&self.shared.store) {
                Ok(n) => self.stats.ops.bytes_written.add(n as u64),
                Err(_) => return self.close(key),
            }
            if conn.has_output() {
                return;
            }
        }
        if conn.closing {
            return self.close(key);
        }
        if self.watchers.iter().any(|w| w.0 == key) {
            return self.drive_watcher(key);
        }
        crate::stats::set_current_fd(conn.fd);
        let ctx = Ctx {
            shared: &self.shared,
            stats: &self.stats,
        };
        let mut budget = self.shared.settings.reqs_per_event.max(1);
        let mut need = 0usize;
        let mut stop = None;
        let mut close = false;
        // When the last turn stopped with complete requests still buffered
        // (the -R budget or the output limit), run those before reading
        // more: reading ahead of a pipelining client only grows its buffer.
        let mut read_first = !conn.has_more;
        // Whether this turn read anything (until then the connection is
        // `conn_new_cmd` in `stats conns`).
        let mut read_any = conn.entry.state.load(Ordering::Relaxed) != ConnState::NewCmd as u8;
        conn.has_more = false;
        let short_read_drains = !read_to_eagain && conn.stream.short_read_drains();
        let input_before = conn.input.footprint();
        loop {
            let (mut got, mut eof, mut blocked) = (0, false, false);
            // Bytes of this read that are in the scratch buffer, and that
            // went into an item (a binary value can complete its request
            // with nothing left over for the input).
            let mut scratch = 0;
            let mut into_item = 0;
            let mut from_scratch = false;
            let mut no_buffer = false;
            if read_first {
                // Read into the worker's scratch buffer and keep only the
                // bytes that arrived, so a connection holding a partial
                // request costs that request's size, not a whole read
                // buffer. A value whose item is already allocated is read
                // into the item, and what follows it into the scratch
                // buffer. The rest of another data block of known size is
                // read straight into the connection's buffer. Either way
                // its bytes are copied once, not twice.
                let len = conn.input.len();
                let direct = len > 0 && reads_straight_in(need, len);
                let store = &self.shared.store;
                // (Only with nothing buffered: buffered bytes come first,
                // and `process` moves them into the item.)
                let room = if len == 0 {
                    conn.session.value_room(store)
                } else {
                    None
                };
                let res = if let Some(room) = room {
                    let want = room.len();
                    let scratch_len = self.rbuf.len();
                    let mut iov = [IoSliceMut::new(room), IoSliceMut::new(&mut self.rbuf[..])];
                    let r = conn.stream.read_vectored(&mut iov);
                    r.map(|n| {
                        into_item = n.min(want);
                        (n, n < want + scratch_len)
                    })
                } else if direct {
                    conn.input
                        .read_from(&mut conn.stream, need - len, &mut self.pool)
                } else {
                    let r = conn.stream.read(&mut self.rbuf[..]);
                    r.map(|n| (n, n < self.rbuf.len()))
                };
                match res {
                    Ok((0, _)) => eof = true,
                    Ok((n, short)) => {
                        got = n;
                        blocked = short_read_drains && short;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => blocked = true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => eof = true,
                }
                if into_item > 0 {
                    conn.session.value_filled(store, into_item);
                }
                if !direct {
                    scratch = got - into_item;
                }
                if scratch > 0 {
                    if len == 0 {
                        from_scratch = true;
                    } else {
                        conn.input
                            .extend_from_slice(&self.rbuf[..scratch], &mut self.pool);
                    }
                }
            }
            read_first = true;
            read_any |= got > 0;
            if got > 0 {
                self.stats.ops.bytes_read.add(got as u64);
                let now = self.shared.clock.now();
                conn.last_active = now;
                conn.entry.last_cmd.store(now, Ordering::Relaxed);
            }
            // Run the complete requests.
            let input: &[u8] = if from_scratch {
                &self.rbuf[..scratch]
            } else {
                conn.input.data()
            };
            let idle = input.is_empty() && into_item == 0;
            let t0 = if idle { None } else { crate::latency::start() };
            // Large values go out from item memory, except where the
            // bytes themselves are needed (TLS, `-vv` reply logging).
            self.wbuf
                .set_splicing(conn.stream.takes_splices() && !crate::exec::watch::logs_replies());
            let p = if idle {
                Progress::idle()
            } else {
                conn.session
                    .process(&ctx, input, &mut self.wbuf, budget, OUT_LIMIT)
            };
            budget = budget.saturating_sub(p.requests);
            need = p.need;
            if from_scratch {
                if p.consumed < scratch {
                    // A connection taking a buffer of its own while its
                    // worker's buffers are over `read_buf_mem_limit` is
                    // closed, as memcached closes one it has no read
                    // buffer for; one already holding a buffer may grow
                    // it (memcached's large-request path is not limited
                    // either).
                    // The replies of the requests that ran are still sent
                    // (below), then the connection closes.
                    let left = scratch - p.consumed;
                    if conn.input.footprint().0 == 0
                        && over_read_buf_limit(&self.shared, &self.stats, &mut self.pool, left)
                    {
                        self.stats.ops.read_buf_oom.incr();
                        no_buffer = true;
                    } else {
                        // A data block of known size that will be read
                        // straight into the buffer gets its whole buffer
                        // now, so its first part is not copied again as it
                        // grows. (A small remainder grows by doubling: a
                        // connection holding a few bytes of a request
                        // should not hold 4 KiB.)
                        if reads_straight_in(p.need, left) {
                            conn.input.reserve_total(p.need, &mut self.pool);
                        }
                        conn.input
                            .extend_from_slice(&self.rbuf[p.consumed..scratch], &mut self.pool);
                    }
                }
            } else {
                conn.input.consume(p.consumed, &mut self.pool);
            }
            let sent = if self.wbuf.total() > 0 {
                if self.wbuf.has_splices() && crate::exec::watch::logs_replies() {
                    // `verbosity 2` arrived in this batch, after values
                    // were spliced: log the whole reply.
                    let whole: Vec<u8> = self.wbuf.pieces().flatten().copied().collect();
                    crate::exec::watch::log_replies(conn.fd, &whole);
                } else {
                    crate::exec::watch::log_replies(conn.fd, &self.wbuf);
                }
                Some(conn.send_out(&mut self.wbuf, &self.shared.store))
            } else {
                None
            };
            // The socket took the values, or `pending` holds copies or
            // took the whole reply with its pins (leaving `wbuf` empty):
            // give back any pins left, and leave the buffer empty for the
            // next connection, on every path out of this turn.
            self.wbuf.release(&self.shared.store);
            match sent {
                Some(Ok(n)) => self.stats.ops.bytes_written.add(n as u64),
                Some(Err(_)) => {
                    close = true;
                    break;
                }
                None => {}
            }
            crate::latency::finish(&self.stats.latency, t0);
            if let Some(w) = crate::exec::watch::take_started() {
                // This connection is a `watch` stream from now on.
                self.watchers.push((key, w));
                read_any = false;
                conn.entry
                    .state
                    .store(ConnState::Watch as u8, Ordering::Relaxed);
                break;
            }
            match p.action {
                Action::Continue | Action::Swallow(_) => {}
                Action::Close => {
                    conn.closing = true;
                    break;
                }
                Action::Stop(why) => {
                    stop = Some(why);
                    conn.closing = true;
                    break;
                }
            }
            if no_buffer {
                // No read buffer to be had (`read_buf_oom`): close once
                // the replies above are out, as after `quit`.
                conn.closing = true;
                break;
            }
            // Complete requests may remain buffered: the budget ran out or
            // the output reached its limit.
            let leftover = p.more || (budget == 0 && !conn.input.is_empty());
            if conn.has_output() {
                // The socket is full: wait for it to drain before doing
                // more (backpressure); the writable event resumes here.
                conn.has_more = leftover;
                break;
            }
            if budget == 0 {
                // memcached counts a yield only when input is left over
                // for the next turn: 40 pipelined requests make one, 41
                // two, 20 none.
                if leftover {
                    self.stats.ops.conn_yields.incr();
                }
                conn.has_more = leftover;
                self.ready.next.push(key);
                break;
            }
            if p.more {
                read_first = false;
                continue;
            }
            if eof {
                close = true;
                break;
            }
            if blocked {
                break;
            }
        }
        if let Some(c) = self.conns.get(key) {
            self.stats
                .read_bufs
                .change(input_before, c.input.footprint());
            if read_any {
                let state = if c.has_output() {
                    ConnState::MWrite
                } else if c.session.swallowing() {
                    ConnState::Swallow
                } else if c.session.reading_value(c.input.data(), need) {
                    ConnState::NRead
                } else {
                    ConnState::Read
                };
                c.entry.state.store(state as u8, Ordering::Relaxed);
            }
        }
        if let Some(why) = stop {
            self.shared.request_stop(why);
            let sig = match why {
                StopRequest::Now => libc::SIGINT,
                StopRequest::Graceful => libc::SIGUSR1,
            };
            // SAFETY: kill() with our own pid and a valid signal number has
            // no memory effects; main's sigwait receives it.
            unsafe {
                libc::kill(libc::getpid(), sig);
            }
        }
        let conn_closing = self.conns.get(key).map(|c| c.closing && !c.has_output());
        if close || conn_closing == Some(true) {
            self.close(key);
        }
    }
}

/// Connections (or UDP sockets) to serve again after the next poll,
/// kept as two vectors that trade places each round so that queueing
/// one never allocates once both have grown to the worker's working
/// size (a `mem::take` would leave an empty vector to regrow every
/// round). They start with room for more than a worker usually has
/// waiting at once, so under load they do not regrow either.
struct Requeue {
    /// Queued for the next round.
    next: Vec<usize>,
    /// Emptied storage, swapped in by `take`.
    spare: Vec<usize>,
}

impl Requeue {
    fn with_capacity(n: usize) -> Requeue {
        Requeue {
            next: Vec::with_capacity(n),
            spare: Vec::with_capacity(n),
        }
    }

    /// This round's list; `next` starts empty again.
    fn take(&mut self) -> Vec<usize> {
        std::mem::swap(&mut self.next, &mut self.spare);
        std::mem::take(&mut self.spare)
    }

    /// Return the list `take` gave, as the spare storage.
    fn give_back(&mut self, list: &mut Vec<usize>) {
        list.clear();
        self.spare = std::mem::take(list);
    }
}

/// Whether the next read of a connection holding `held` bytes of a
/// request of `need` bytes goes straight into its buffer (see
/// `DIRECT_MIN`).
fn reads_straight_in(need: usize, held: usize) -> bool {
    need >= held + DIRECT_MIN
}

/// Whether `more` bytes of connection buffers would take this worker
/// past its share of `read_buf_mem_limit` (the limit over `-t`, as
/// memcached splits it). Never while no connection holds a buffer,
/// so one request can always be buffered. Spare buffers in `pool` count
/// as held, and are freed before the answer is yes.
fn over_read_buf_limit(
    shared: &Shared,
    stats: &ThreadStats,
    pool: &mut BufPool,
    more: usize,
) -> bool {
    let limit = shared.settings.read_buf_mem_limit as usize;
    if limit == 0 {
        return false;
    }
    let share = limit / shared.settings.threads.max(1);
    let held = || stats.read_bufs.get().1 as usize - READ_CHUNK;
    if held() + more <= share {
        return false;
    }
    // Pooled buffers count as held: give them back before refusing.
    pool.clear();
    let now = held();
    now > 0 && now + more > share
}
