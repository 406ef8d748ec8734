//! Sockets, worker threads and connections.
//!
//! `Server::start` binds everything first (so a bind failure exits before
//! any thread runs), then starts one worker thread per `-t`, each with
//! its own poll loop and its own SO_REUSEPORT listener per address.

pub mod bufpool;
pub mod conn;
pub mod listener;
pub mod pending;
pub mod port_file;
pub mod resolve;
pub mod tls;
pub mod udp;
pub mod worker;

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::exec::Shared;

pub use listener::BindError;
use listener::Transport;
use worker::{ListenSocket, Listener, UdpListener, Worker, WorkerHandle};

/// The bound listeners, before any worker runs.
pub struct Bound {
    per_worker: Vec<Vec<Listener>>,
    /// Each worker's UDP sockets (`-U`), one per address.
    udp: Vec<Vec<UdpListener>>,
}

/// Bind every listener the settings ask for: `threads` copies of each TCP
/// address, and the unix socket (owned by worker 0). With `tls` (`-Z`),
/// TCP listeners not marked `notls:` hand their connections to it.
/// `socket_owner` (uid, gid) is who the unix socket file will belong to
/// once privileges are dropped.
pub fn bind(
    shared: &Shared,
    tls: Option<Arc<tls::TlsContext>>,
    socket_owner: Option<(u32, u32)>,
) -> Result<Bound, BindError> {
    let s = &shared.settings;
    let threads = s.threads.max(1);
    let mut per_worker: Vec<Vec<Listener>> = (0..threads).map(|_| Vec::new()).collect();
    let mut udp: Vec<Vec<UdpListener>> = (0..threads).map(|_| Vec::new()).collect();
    if let Some(path) = &s.socket_path {
        let l = listener::bind_unix(path, s.socket_mask, socket_owner, s.backlog)?;
        per_worker[0].push(Listener {
            socket: ListenSocket::Unix(mio::net::UnixListener::from_std(l)),
            protocol: s.protocol,
        });
        shared.conns.listeners_bound(1);
        return Ok(Bound { per_worker, udp });
    }
    let mut ports = port_file::PortFile::from_env();
    for ep in listener::bind_network(s, Transport::Tcp, threads, ports.as_mut())? {
        for (w, sock) in per_worker.iter_mut().zip(ep.sockets) {
            let l = mio::net::TcpListener::from_std(sock.into());
            let socket = match (&tls, ep.tls) {
                (Some(ctx), true) => ListenSocket::Tls(l, Arc::clone(ctx)),
                _ => ListenSocket::Tcp(l),
            };
            w.push(Listener {
                socket,
                protocol: ep.protocol,
            });
        }
    }
    for ep in listener::bind_network(s, Transport::Udp, threads, ports.as_mut())? {
        for (w, sock) in udp.iter_mut().zip(ep.sockets) {
            w.push(UdpListener {
                socket: mio::net::UdpSocket::from_std(sock.into()),
                protocol: ep.protocol,
            });
        }
    }
    if let Some(p) = ports {
        p.finish();
    }
    // memcached's listening connections: one per TCP address, one per
    // worker for each UDP address (`stats::ConnStats`).
    let tcp = per_worker[0].len();
    let udp_conns: usize = udp.iter().map(Vec::len).sum();
    shared.conns.listeners_bound((tcp + udp_conns) as u64);
    Ok(Bound { per_worker, udp })
}

/// Running workers.
pub struct Server {
    handles: Vec<WorkerHandle>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Start one worker thread per listener set.
    pub fn start(shared: Arc<Shared>, bound: Bound) -> std::io::Result<Server> {
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        let udp = bound.udp.into_iter();
        for (id, (listeners, udp)) in bound.per_worker.into_iter().zip(udp).enumerate() {
            let (worker, handle) = Worker::new(id, listeners, udp, Arc::clone(&shared))?;
            handles.push(handle);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("gannet-worker-{id}"))
                    .spawn(move || worker.run())?,
            );
        }
        Ok(Server { handles, threads })
    }

    /// Stop every worker and wait for them: listeners close, connections
    /// close.
    pub fn stop(self) {
        for h in &self.handles {
            h.stop();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}
