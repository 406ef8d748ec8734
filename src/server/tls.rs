//! TLS (`-Z`) with rustls, driven by the workers' own non-blocking loops.
//!
//! Why it looks like this:
//!
//! - **No thread per connection.** A TLS connection is a [`TlsStream`]:
//!   the mio socket plus a rustls `ServerConnection`, boxed inside
//!   `conn::Stream::Tls` so a plaintext `Conn` stays as small as before
//!   and its read and write paths gain one enum match, nothing more. The
//!   stream implements `Read` and `Write` with plain non-blocking
//!   semantics (`WouldBlock` when the socket is), so the worker's
//!   backpressure, `-R` budget and pending-output logic serve both kinds
//!   unchanged.
//! - **The handshake happens inside `read`.** The first reads feed the
//!   client's records to rustls (`read_tls`, `process_new_packets`) and
//!   flush rustls' answers (`write_tls`); until the handshake is done no
//!   plaintext comes out, so the worker just sees `WouldBlock`. A client
//!   that is not speaking TLS (a plaintext `get foo`), a failed client
//!   certificate check or any protocol error makes `read` fail, and the
//!   worker closes the connection as it does on any socket error; the
//!   failure is logged at info level (shown with `-v`, as memcached
//!   prints its "SSL connection failed") and handshake failures are
//!   counted in `ssl_handshake_errors`.
//! - **Output stays bounded.** rustls buffers ciphertext it could not send
//!   yet; its buffer limit is `ssl_wbuf_size`, so `writer().write` takes
//!   no more than that and the rest stays in the connection's own
//!   `pending` buffer, which the worker already bounds. Ciphertext rustls
//!   still holds counts as pending output ([`TlsStream::wants_write`]),
//!   so the worker keeps waiting for writability (the socket is always
//!   registered for both directions, edge-triggered) and never closes a
//!   connection before its last reply left.
//! - **Certificates reload without stopping anyone.** [`TlsContext`]
//!   holds the current `Arc<ServerConfig>` in a `RwLock` that is read
//!   only at accept time (one uncontended read lock per new TLS
//!   connection); `refresh_certs` builds a new config from the same files
//!   and swaps it in. Connections keep the config they started with, so a
//!   reload never disturbs a running session, and a failed reload keeps
//!   the old certificates.
//!
//! Mapping of memcached's OpenSSL options: `ssl_verify_mode` 0 = no client
//! certificate, 1 = asked for and verified against `ssl_ca_cert` when
//! given, 2 and 3 = required; `ssl_min_version` 0..2 = TLS 1.2 and 1.3
//! (rustls has no 1.0/1.1), 3 = TLS 1.3 only; `ssl_session_cache` =
//! rustls' in-memory session cache, otherwise stateless session tickets;
//! `ssl_ciphers` and `ssl_kernel_tls` are not applied (see
//! docs/COMPATIBILITY.md).

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    NoServerSessionStorage, ServerSessionMemoryCache, StoresServerSessions, WebPkiClientVerifier,
};
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use crate::clock::Clock;
use crate::config::TlsSettings;

/// Sessions the `ssl_session_cache` keeps (OpenSSL's default cache size).
const SESSION_CACHE_SIZE: usize = 20 * 1024;
/// Smallest rustls output buffer, whatever `ssl_wbuf_size` says: one
/// full TLS record.
const MIN_WBUF: usize = 16 * 1024 + 256;

/// The server side of TLS: the files, the current configuration, and the
/// counters `stats` reports.
pub struct TlsContext {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
    /// Shared by every configuration, so sessions and tickets survive a
    /// certificate reload.
    session_storage: Arc<dyn StoresServerSessions>,
    ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
    /// The session cache (`ssl_session_cache`), for `ssl_new_sessions`.
    cache: Option<Arc<CountingCache>>,
    clock: Arc<Clock>,
    /// `ssl_handshake_errors`.
    handshake_errors: AtomicU64,
    /// When the certificates were last loaded (clock seconds).
    last_refresh: AtomicU32,
}

impl TlsContext {
    /// Load the certificates and build the first configuration. The error
    /// is memcached's message for the file that failed, with its line
    /// end (`Error loading the key: <path> : <reason>\r\n`).
    pub fn load(settings: &TlsSettings, clock: Arc<Clock>) -> Result<TlsContext, String> {
        if let Some(list) = &settings.ciphers {
            log::warn!("ssl_ciphers={list} is not applied: rustls uses its own cipher suites");
        }
        if settings.kernel_tls {
            log::warn!("ssl_kernel_tls is not applied: TLS runs in user space");
        }
        let (session_storage, ticketer, cache): (Arc<dyn StoresServerSessions>, _, _) =
            if settings.session_cache {
                let cache = Arc::new(CountingCache {
                    inner: ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
                    new_sessions: AtomicU64::new(0),
                });
                (Arc::clone(&cache) as _, None, Some(cache))
            } else {
                let t = rustls::crypto::ring::Ticketer::new()
                    .map_err(|e| format!("Error creating the TLS context: {e}\r\n"))?;
                (Arc::new(NoServerSessionStorage {}), Some(t), None)
            };
        let cfg = build(settings, &session_storage, &ticketer)?;
        Ok(TlsContext {
            settings: settings.clone(),
            current: RwLock::new(Arc::new(cfg)),
            session_storage,
            ticketer,
            cache,
            last_refresh: AtomicU32::new(clock.now()),
            clock,
            handshake_errors: AtomicU64::new(0),
        })
    }

    /// `refresh_certs`: reload the files; new connections get the new
    /// certificates, running ones keep theirs. On failure the old
    /// configuration stays and the error is memcached's message.
    pub fn refresh(&self) -> Result<(), String> {
        let cfg = build(&self.settings, &self.session_storage, &self.ticketer)?;
        match self.current.write() {
            Ok(mut cur) => *cur = Arc::new(cfg),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(cfg),
        }
        self.last_refresh.store(self.clock.now(), Ordering::Relaxed);
        log::info!("TLS certificates reloaded");
        Ok(())
    }

    /// The configuration for a connection accepted now.
    fn config(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Wrap an accepted socket in a new server session.
    pub fn accept(self: &Arc<Self>, sock: TcpStream) -> Result<TlsStream, rustls::Error> {
        let mut tls = ServerConnection::new(self.config())?;
        let limit = (self.settings.wbuf_size as usize).max(MIN_WBUF);
        tls.set_buffer_limit(Some(limit));
        Ok(TlsStream {
            sock,
            tls,
            ctx: Arc::clone(self),
            eof: false,
        })
    }
}

impl crate::exec::TlsHook for TlsContext {
    fn refresh_certs(&self) -> Result<(), String> {
        self.refresh()
    }

    fn new_sessions(&self) -> Option<u64> {
        self.cache
            .as_ref()
            .map(|c| c.new_sessions.load(Ordering::Relaxed))
    }

    fn handshake_errors(&self) -> u64 {
        self.handshake_errors.load(Ordering::Relaxed)
    }

    fn secs_since_cert_refresh(&self) -> u32 {
        self.clock
            .now()
            .saturating_sub(self.last_refresh.load(Ordering::Relaxed))
    }
}

/// Build a server configuration from the files as they are now.
fn build(
    s: &TlsSettings,
    session_storage: &Arc<dyn StoresServerSessions>,
    ticketer: &Option<Arc<dyn rustls::server::ProducesTickets>>,
) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = if s.min_version >= 3 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| format!("Error creating the TLS context: {e}\r\n"))?;

    let chain_path = s.chain_cert.as_deref().unwrap_or("(null)");
    let chain = load_certs(s.chain_cert.as_deref())
        .map_err(|e| format!("Error loading the certificate chain: {chain_path} : {e}\r\n"))?;
    let key_path = s.key.as_deref().unwrap_or("(null)");
    let key = load_key(s.key.as_deref(), s.keyformat)
        .map_err(|e| format!("Error loading the key: {key_path} : {e}\r\n"))?;

    let builder = if s.verify_mode == 0 {
        builder.with_no_client_auth()
    } else {
        let ca_path = s.ca_cert.as_deref().unwrap_or("NULL");
        let ca_err = |e: String| format!("Error loading the CA certificate: {ca_path} : {e}\r\n");
        let mut roots = RootCertStore::empty();
        if s.ca_cert.is_none() {
            return Err(ca_err(
                "ssl_verify_mode needs ssl_ca_cert to verify client certificates".into(),
            ));
        }
        for cert in load_certs(s.ca_cert.as_deref()).map_err(ca_err)? {
            roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
        }
        let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        if s.verify_mode == 1 {
            // SSL_VERIFY_PEER alone: ask, verify what is sent, let a
            // client without a certificate in.
            v = v.allow_unauthenticated();
        }
        builder.with_client_cert_verifier(v.build().map_err(|e| ca_err(e.to_string()))?)
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("Error loading the key: {key_path} : {e}\r\n"))?;
    cfg.session_storage = Arc::clone(session_storage);
    if let Some(t) = ticketer {
        cfg.ticketer = Arc::clone(t);
    }
    Ok(cfg)
}

/// rustls' in-memory session cache, counting the sessions it stores
/// (memcached's `ssl_new_sessions`, counted by its new-session callback).
#[derive(Debug)]
struct CountingCache {
    inner: Arc<ServerSessionMemoryCache>,
    new_sessions: AtomicU64,
}

impl StoresServerSessions for CountingCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let stored = self.inner.put(key, value);
        if stored {
            self.new_sessions.fetch_add(1, Ordering::Relaxed);
        }
        stored
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.take(key)
    }

    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

/// Read a whole file, with the operating system's reason on failure.
fn read_file(path: Option<&str>) -> Result<Vec<u8>, String> {
    let path = path.ok_or_else(|| "no file given".to_string())?;
    std::fs::read(path).map_err(|e| e.to_string())
}

/// Every certificate of a PEM file, in order.
fn load_certs(path: Option<&str>) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate found (PEM)".into());
    }
    Ok(certs)
}

/// The private key: PEM (`ssl_keyformat` 1, memcached's default) or DER
/// (2, OpenSSL's `SSL_FILETYPE_ASN1`).
fn load_key(path: Option<&str>, format: i32) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read_file(path)?;
    if format == 2 {
        return PrivateKeyDer::try_from(bytes).map_err(|e| e.to_string());
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no private key found (PEM)".to_string(),
        e => e.to_string(),
    })
}

/// One TLS connection: the socket and its rustls session.
pub struct TlsStream {
    sock: TcpStream,
    tls: ServerConnection,
    ctx: Arc<TlsContext>,
    /// The socket reached end of file.
    eof: bool,
}

impl TlsStream {
    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    pub fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    /// rustls holds ciphertext the socket has not taken yet.
    pub fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    /// The session, for tests and diagnostics.
    pub fn session(&self) -> &ServerConnection {
        &self.tls
    }

    /// Send rustls' ciphertext until it has none or the socket is full.
    fn flush_tls(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Queue close_notify and try once to send it (best effort: the
    /// connection is closing either way).
    pub fn close_notify(&mut self) {
        if !self.tls.is_handshaking() {
            self.tls.send_close_notify();
        }
        let _ = self.flush_tls();
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // Plaintext rustls already decrypted comes first, so received
            // plaintext never piles up inside rustls.
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: end of input.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(0);
            }
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Handshake messages may be waiting to go out.
                    self.flush_tls()?;
                    return Err(e);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(err) = self.tls.process_new_packets() {
                let handshaking = self.tls.is_handshaking();
                if handshaking {
                    self.ctx.handshake_errors.fetch_add(1, Ordering::Relaxed);
                }
                // memcached reports these with -v.
                log::info!(
                    "TLS {} failed: {err}",
                    if handshaking { "handshake" } else { "session" }
                );
                // rustls queued an alert for the peer: try to send it.
                let _ = self.flush_tls();
                return Err(io::Error::new(io::ErrorKind::InvalidData, err));
            }
            self.flush_tls()?;
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.flush_tls()?;
        let n = self.tls.writer().write(buf)?;
        self.flush_tls()?;
        if n == 0 && !buf.is_empty() {
            // rustls' buffer is full and the socket takes nothing.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}
