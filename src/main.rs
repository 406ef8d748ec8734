//! The gannet daemon: parse memcached's command line, bind, serve, and
//! exit with memcached's exit codes.
//!
//! Signals are blocked in every thread and taken synchronously by the main
//! thread with `sigwait`, so no code runs in signal-handler context:
//! SIGTERM, SIGINT and SIGUSR1 (memcached's graceful stop) all stop the
//! server the same way and exit 0; SIGHUP re-reads the `-Y` auth file, as
//! memcached's does. A client's `shutdown` sends the process one of
//! these signals, so every way of stopping takes the same path.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use gannet::clock::Clock;
use gannet::config;
use gannet::daemon;
use gannet::exec::Shared;
use gannet::logging;
use gannet::server::{self, Server};

/// memcached exits with EX_OSERR when it cannot bind.
const EXIT_BIND: u8 = 71;
/// memcached exits with EX_USAGE when its TLS files do not load.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    install_panic_policy();
    let settings = match config::parse(std::env::args_os()) {
        Ok(s) => s,
        Err(exit) => {
            let _ = std::io::stdout().write_all(exit.stdout.as_bytes());
            let _ = std::io::stderr().write_all(exit.stderr.as_bytes());
            return ExitCode::from(exit.code as u8);
        }
    };
    for w in &settings.warnings {
        eprintln!("{w}");
    }
    logging::init(settings.verbose);

    // -Y: an unreadable or malformed auth file stops the start (exit 1, as
    // memcached); loading it here also keeps file reads off the workers.
    if let Some(path) = &settings.auth_file {
        if let Err(msg) = gannet::exec::auth::check_at_start(path) {
            eprintln!("{msg}");
            return ExitCode::from(1);
        }
    }

    let clock = Clock::new();
    // -Z: load the certificates first (before the root check) and while
    // still root, as memcached does; a file that does not load stops the
    // start (64, memcached's message).
    let tls = if settings.tls {
        match server::tls::TlsContext::load(&settings.ssl, Arc::clone(&clock)) {
            Ok(ctx) => Some(Arc::new(ctx)),
            Err(msg) => {
                eprint!("{msg}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    } else {
        None
    };
    // Before anything happens: root needs -u, and -u must exist (64, 67).
    let user = match daemon::resolve_user(settings.user.as_deref()) {
        Ok(user) => user,
        Err(e) => return fatal(&e),
    };
    // While still root, so hard limits can be raised (-r, then -c).
    if settings.enable_coredumps {
        if let Err(e) = daemon::enable_core_dumps() {
            return fatal(&e);
        }
    }
    if let Err(e) = daemon::raise_nofile(settings.max_conns) {
        return fatal(&e);
    }
    let daemonize = settings.daemonize;
    let keep_stdio = settings.verbose > 0;
    // What -k must be able to lock: the item memory, every thread's stack
    // (workers and about six helpers, 2 MiB each by Rust's default) and a
    // margin for the index, buffers and the binary.
    let lock_memory = settings.lock_memory.then(|| {
        let threads = settings.threads as u64 + 6;
        settings.memory_limit_mb as u64 * (1 << 20) + threads * (2 << 20) + (64 << 20)
    });
    let pid_path = settings.pid_file.clone();

    let verbose = settings.verbose;
    let signals = block_signals();
    let mut shared = Shared::new(settings, Arc::clone(&clock));
    if verbose > 1 {
        // memcached's slabs_init prints its class table at -vv.
        for (id, size, perslab) in shared.store.class_table() {
            eprintln!("slab class {id:3}: chunk size {size:9} perslab {perslab:7}");
        }
    }
    shared.tls = tls.clone().map(|t| t as Arc<dyn gannet::exec::TlsHook>);
    let shared = Arc::new(shared);
    // -L: reserve and touch item memory now, or refuse to start (exit 1).
    if let Err(e) = shared.store.reserve_memory() {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    // Bind as root (ports below 1024), then drop privileges.
    let socket_owner = user.as_ref().map(|u| (u.uid, u.gid));
    let bound = match server::bind(&shared, tls, socket_owner) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_BIND);
        }
    };
    if let Some(user) = &user {
        if let Err(e) = daemon::drop_privileges(user) {
            return fatal(&e);
        }
    }
    // fork keeps one thread: daemonize before the clock and workers start.
    let detached = if daemonize {
        match daemon::daemonize(keep_stdio) {
            Ok(d) => Some(d),
            Err(e) => return fatal(&e),
        }
    } else {
        None
    };
    if let Some(needed) = lock_memory {
        if let Err(e) = daemon::lock_memory(needed) {
            eprintln!("{e}");
        }
    }
    let pid_file = pid_path.and_then(|path| match daemon::PidFile::create(&path) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    });
    if let Err(e) = clock.spawn_ticker(Duration::from_millis(100)) {
        eprintln!("failed to start the clock thread: {e}");
        return ExitCode::from(EXIT_BIND);
    }
    // Whether to say "ready" is decided by the start-up flags: once the
    // workers run, a client's `verbosity` may change the log level before
    // this thread gets there, and the line would come or not by timing.
    let announce = log::log_enabled!(log::Level::Info);
    let server = match Server::start(Arc::clone(&shared), bound) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("failed to start worker threads: {e}");
            return ExitCode::from(EXIT_BIND);
        }
    };
    if let Err(e) = gannet::exec::crawler::spawn(Arc::clone(&shared)) {
        eprintln!("failed to start the lru crawler thread: {e}");
        return ExitCode::from(EXIT_BIND);
    }
    if let Err(e) = gannet::exec::maintainer::spawn(Arc::clone(&shared)) {
        eprintln!("failed to start the lru maintainer thread: {e}");
        return ExitCode::from(EXIT_BIND);
    }
    if let Err(e) = gannet::exec::rebalance::spawn(Arc::clone(&shared)) {
        eprintln!("failed to start the slab rebalancer thread: {e}");
        return ExitCode::from(EXIT_BIND);
    }
    if let Err(e) = gannet::metrics::spawn(Arc::clone(&shared)) {
        eprintln!("failed to listen for metrics: {e}");
        return ExitCode::from(EXIT_BIND);
    }
    if let Some(detached) = detached {
        if let Err(e) = detached.ready() {
            eprintln!("failed to detach: {e}");
        }
    }
    if announce {
        log::info!("gannet {} ready", env!("CARGO_PKG_VERSION"));
    }
    loop {
        match wait_signal(&signals) {
            libc::SIGHUP => {
                // memcached reloads the -Y auth file on SIGHUP and keeps
                // the old one when the new one does not load.
                if let Some(path) = &shared.settings.auth_file {
                    if let Err(e) = gannet::exec::auth::reload(path) {
                        log::warn!("SIGHUP: keeping the old auth file: {e:?}");
                    }
                }
                continue;
            }
            // memcached's words on stderr as it stops: always for its
            // graceful stop, only when verbose (as `verbosity` last set
            // it) for the others.
            libc::SIGUSR1 => {
                logging::stderr_line(format_args!("Gracefully stopping"));
                break;
            }
            _ => {
                if shared.verbosity.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                    logging::stderr_line(format_args!("Exiting normally"));
                }
                break;
            }
        }
    }
    server.stop();
    if let Some(pid_file) = pid_file {
        pid_file.remove();
    }
    ExitCode::SUCCESS
}

/// Print a daemon set-up error and exit with memcached's status for it.
fn fatal(e: &daemon::DaemonError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
}

/// A panic anywhere is a bug, and a worker that died silently would leave
/// its connections hanging and its share of the port unserved. So any
/// panic logs one clear line (thread, message, location) and aborts the
/// whole process; the service manager (`Restart=on-failure`) starts a
/// fresh one. Release builds also compile with `panic = "abort"`.
fn install_panic_policy() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("gannet: fatal: thread '{name}' panicked at {location}: {msg}; aborting");
        std::process::abort();
    }));
}

/// The signals main waits for, blocked in this thread (and so in every
/// thread started after this call).
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it,
    // pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        // A peer that resets mid-write must never kill the process.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        set
    }
}

/// Wait for one of the blocked signals.
fn wait_signal(set: &libc::sigset_t) -> libc::c_int {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` was initialised by block_signals; sigwait writes the
    // signal number into `sig`.
    loop {
        let rc = unsafe { libc::sigwait(set, &mut sig) };
        if rc == 0 {
            return sig;
        }
    }
}
