//! Daemon behaviour of the built binary, over loopback: `-d`, `-P`, `-u`,
//! the root check and signals. The expected codes and messages are
//! memcached 1.6's (checked against /usr/bin/memcached 1.6.18): root
//! without `-u` exits 64 with "can't run as root without the -u switch",
//! an unknown user exits 67 with "can't find the user X to switch to",
//! SIGTERM and SIGINT exit 0.
//!
//! Run as root, the tests start gannet with `-u nobody` (and check the
//! root-only refusals); run as another user they check that `-u` is
//! ignored, as memcached does.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gannet");
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Base arguments: loopback only, a fresh port, and `-u nobody` when root.
fn base_args(port: u16) -> Vec<String> {
    let mut args = vec![
        "-l".to_string(),
        "127.0.0.1".to_string(),
        "-p".to_string(),
        port.to_string(),
        "-U".to_string(),
        "0".to_string(),
        "-t".to_string(),
        "1".to_string(),
    ];
    if is_root() {
        args.extend(["-u".to_string(), "nobody".to_string()]);
    }
    args
}

/// A directory the daemon's user can write its pid file into.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gannet-test-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    if is_root() {
        std::os::unix::fs::chown(&dir, Some(NOBODY), None).unwrap();
    }
    dir
}

/// `version` over TCP: the reply line, or None if nobody answers.
fn version(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"version\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line)
}

fn wait_for_version(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = version(port) {
            assert!(line.starts_with("VERSION "), "reply {line:?}");
            assert!(line.ends_with("\r\n"), "reply {line:?}");
            return line;
        }
        assert!(Instant::now() < deadline, "no reply on port {port}");
        sleep(Duration::from_millis(50));
    }
}

fn send_signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: kill takes plain integers; pid is a process this test started.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry: look at its state too.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        }
        Err(_) => false,
    }
}

/// A foreground gannet, killed if the test ends early.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(args: &[String]) -> Daemon {
        Daemon::start_bin(BIN, args)
    }

    /// `bin` (gannet, or memcached to compare) with `args`.
    fn start_bin(bin: &str, args: &[String]) -> Daemon {
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Daemon { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "gannet did not exit");
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Kills a daemonized gannet (not our child) if the test ends early.
struct Detached(u32);

impl Drop for Detached {
    fn drop(&mut self) {
        if alive(self.0) {
            send_signal(self.0, libc::SIGKILL);
        }
    }
}

/// Run gannet to completion, with stderr captured through a file (a
/// daemon may keep a pipe open) and a deadline: a binary that ignores the
/// flag under test must fail the test, not hang it.
fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let err_path =
        std::env::temp_dir().join(format!("gannet-test-stderr-{}-{n}", std::process::id()));
    let err_file = fs::File::create(&err_path).unwrap();
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = fs::remove_file(&err_path);
            panic!("gannet did not exit within 10 s");
        }
        sleep(Duration::from_millis(20));
    };
    let stderr = fs::read(&err_path).unwrap();
    let _ = fs::remove_file(&err_path);
    Output {
        status,
        stdout: Vec::new(),
        stderr,
    }
}

fn proc_status_field(pid: u32, field: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

#[test]
fn root_without_user_exits_64() {
    let port = free_port().to_string();
    if !is_root() {
        // The rule is root's only: another user starts without -u.
        let mut daemon = Daemon::start(&base_args(port.parse().unwrap()));
        wait_for_version(port.parse().unwrap());
        send_signal(daemon.pid(), libc::SIGTERM);
        assert_eq!(daemon.wait_exit(Duration::from_secs(5)).code(), Some(0));
        return;
    }
    let out = run(&["-l", "127.0.0.1", "-p", &port, "-U", "0"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "can't run as root without the -u switch"
    );
    assert!(version(port.parse().unwrap()).is_none());
}

#[test]
fn unknown_user_exits_67_or_is_ignored() {
    let port = free_port();
    let mut args = base_args(port);
    args.retain(|a| a != "-u" && a != "nobody");
    args.extend(["-u".to_string(), "no-such-user-gannet".to_string()]);
    if is_root() {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(67), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim_end(),
            "can't find the user no-such-user-gannet to switch to"
        );
    } else {
        let mut daemon = Daemon::start(&args);
        wait_for_version(port);
        send_signal(daemon.pid(), libc::SIGTERM);
        assert_eq!(daemon.wait_exit(Duration::from_secs(5)).code(), Some(0));
    }
}

#[test]
fn user_drops_privileges_after_binding() {
    if !is_root() {
        // -u is ignored: gannet keeps running as the caller.
        let port = free_port();
        let mut args = base_args(port);
        args.extend(["-u".to_string(), "nobody".to_string()]);
        let mut daemon = Daemon::start(&args);
        wait_for_version(port);
        // SAFETY: getuid takes no arguments and cannot fail.
        let uid = unsafe { libc::getuid() }.to_string();
        let uids = proc_status_field(daemon.pid(), "Uid:");
        assert_eq!(uids.split_whitespace().next(), Some(uid.as_str()));
        send_signal(daemon.pid(), libc::SIGTERM);
        assert_eq!(daemon.wait_exit(Duration::from_secs(5)).code(), Some(0));
        return;
    }
    // A port below 1024 needs root to bind; the process must end up as
    // nobody with no supplementary groups. Find a free low port.
    let port = (900..1000)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("no free port below 1024");
    let mut daemon = Daemon::start(&base_args(port));
    wait_for_version(port);
    let pid = daemon.pid();
    let uids = proc_status_field(pid, "Uid:");
    assert_eq!(uids.split_whitespace().collect::<Vec<_>>(), ["65534"; 4]);
    let gid = fs::metadata(format!("/proc/{pid}"))
        .unwrap()
        .gid()
        .to_string();
    let gids = proc_status_field(pid, "Gid:");
    assert_eq!(
        gids.split_whitespace().collect::<Vec<_>>(),
        [gid.as_str(); 4]
    );
    let groups = proc_status_field(pid, "Groups:");
    assert!(
        groups.is_empty() || groups == gid,
        "supplementary groups {groups:?}"
    );
    send_signal(pid, libc::SIGTERM);
    assert_eq!(daemon.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

#[test]
fn sigterm_exits_zero() {
    let port = free_port();
    let mut daemon = Daemon::start(&base_args(port));
    wait_for_version(port);
    send_signal(daemon.pid(), libc::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(version(port).is_none(), "still listening after SIGTERM");
}

#[test]
fn sigint_exits_zero_and_sighup_is_ignored() {
    let port = free_port();
    let mut daemon = Daemon::start(&base_args(port));
    wait_for_version(port);
    send_signal(daemon.pid(), libc::SIGHUP);
    sleep(Duration::from_millis(200));
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "SIGHUP stopped gannet"
    );
    wait_for_version(port);
    send_signal(daemon.pid(), libc::SIGINT);
    assert_eq!(daemon.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

/// What a server prints on stderr from start to exit when `signal` stops
/// it, `-v` or not.
fn stderr_of_stop(bin: &str, signal: libc::c_int, verbose: bool) -> String {
    let port = free_port();
    let mut args = base_args(port);
    if verbose {
        args.push("-v".to_string());
    }
    let daemon = Daemon::start_bin(bin, &args);
    wait_for_version(port);
    stop_and_read_stderr(daemon, signal)
}

/// Stop a server that serves with `signal`, check it exits 0, and return
/// all it wrote on stderr.
fn stop_and_read_stderr(mut daemon: Daemon, signal: libc::c_int) -> String {
    use std::io::Read;
    send_signal(daemon.pid(), signal);
    let status = daemon.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "signal {signal}: {status:?}");
    let mut err = String::new();
    let mut pipe = daemon.child.stderr.take().unwrap();
    pipe.read_to_string(&mut err).unwrap();
    err
}

/// The reference server's path, or a loud failure when it is missing.
fn memcached_bin() -> &'static str {
    let memcached = "/usr/bin/memcached";
    assert!(
        Path::new(memcached).exists(),
        "memcached is missing: run the README test command"
    );
    memcached
}

/// memcached says "Gracefully stopping" on stderr when SIGUSR1 stops it,
/// and "Exiting normally" on SIGTERM or SIGINT only when verbose. gannet's
/// own `-v` lines come before, so the last line is what is compared then.
#[test]
fn stop_messages_are_memcached_s() {
    let memcached = memcached_bin();
    for (signal, verbose) in [
        (libc::SIGUSR1, false),
        (libc::SIGINT, false),
        (libc::SIGTERM, true),
    ] {
        let theirs = stderr_of_stop(memcached, signal, verbose);
        let ours = stderr_of_stop(BIN, signal, verbose);
        if verbose {
            assert_eq!(ours.lines().last(), Some("Exiting normally"), "{ours:?}");
            assert_eq!(ours.lines().last(), theirs.lines().last(), "{theirs:?}");
        } else {
            assert_eq!(ours, theirs, "signal {signal}");
        }
    }
}

/// A stop whose stderr has no reader any more (the pipe's reader went
/// away) still exits 0: the "Gracefully stopping" line is lost, not turned
/// into a panic.
#[test]
fn stop_with_a_closed_stderr_pipe_exits_zero() {
    let port = free_port();
    let mut daemon = Daemon::start(&base_args(port));
    wait_for_version(port);
    drop(daemon.child.stderr.take());
    send_signal(daemon.pid(), libc::SIGUSR1);
    let status = daemon.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// The same for a worker: with `-S` and no password file, the first SASL
/// login prints a warning; a stderr without a reader must not take the
/// server down with it.
#[test]
fn sasl_warning_with_a_closed_stderr_pipe_keeps_serving() {
    use std::io::Read;
    let port = free_port();
    let mut args = base_args(port);
    args.push("-S".to_string());
    let child = Command::new(BIN)
        .args(&args)
        .env_remove("MEMCACHED_SASL_PWDB")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut daemon = Daemon { child };
    drop(daemon.child.stderr.take());
    // Binary SASL_AUTH, mechanism PLAIN, "\0user\0pass".
    let (key, value) = (&b"PLAIN"[..], &b"\0user\0pass"[..]);
    let mut req = vec![0x80, 0x21, 0, key.len() as u8, 0, 0, 0, 0];
    req.extend_from_slice(&((key.len() + value.len()) as u32).to_be_bytes());
    req.extend_from_slice(&[0; 12]);
    req.extend_from_slice(key);
    req.extend_from_slice(value);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut conn = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "gannet -S never listened: {e}");
                sleep(Duration::from_millis(20));
            }
        }
    };
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..2 {
        conn.write_all(&req).unwrap();
        let mut header = [0u8; 24];
        conn.read_exact(&mut header).unwrap();
        let body = u32::from_be_bytes(header[8..12].try_into().unwrap()) as usize;
        let mut rest = vec![0u8; body];
        conn.read_exact(&mut rest).unwrap();
        // 0x20: authentication error.
        assert_eq!((header[1], header[6], header[7]), (0x21, 0x00, 0x20));
    }
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "gannet exited after the SASL warning"
    );
}

/// `-k` under a memory-lock limit too small for the cache: memcached's
/// mlockall fails, it warns and serves unlocked. gannet must do the same,
/// not lock itself into failing to start its threads (as it did: exit 71,
/// "failed to start the clock thread").
#[test]
fn lock_memory_under_a_small_limit_warns_and_serves_like_memcached() {
    use std::os::unix::process::CommandExt;
    let memcached = memcached_bin();
    let mut firsts = Vec::new();
    for bin in [memcached, BIN] {
        let port = free_port();
        let mut args = base_args(port);
        args.push("-k".to_string());
        let mut cmd = Command::new(bin);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // 8 MiB (Linux's default since 5.16, or the hard limit if lower):
        // more than gannet's process holds when it locks, so a plain
        // mlockall succeeds, and far less than a cache needs. memcached's
        // process is already larger, so its mlockall fails.
        // SAFETY: the closure only calls getrlimit and setrlimit, which are
        // async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                lim.rlim_cur = lim.rlim_max.min(8 << 20);
                if libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let daemon = Daemon {
            child: cmd.spawn().unwrap(),
        };
        wait_for_version(port);
        let err = stop_and_read_stderr(daemon, libc::SIGTERM);
        firsts.push(err.lines().next().map(str::to_string));
    }
    assert_eq!(
        firsts[1].as_deref(),
        Some("warning: -k invalid, mlockall() failed: Cannot allocate memory")
    );
    assert_eq!(firsts[0], firsts[1]);
}

#[test]
fn pid_file_is_written_and_removed_in_the_foreground() {
    let dir = scratch_dir("pid");
    let pid_path = dir.join("gannet.pid");
    let port = free_port();
    let mut args = base_args(port);
    args.extend(["-P".to_string(), pid_path.display().to_string()]);
    let mut daemon = Daemon::start(&args);
    wait_for_version(port);
    assert_eq!(
        fs::read_to_string(&pid_path).unwrap(),
        format!("{}\n", daemon.pid())
    );
    send_signal(daemon.pid(), libc::SIGTERM);
    assert_eq!(daemon.wait_exit(Duration::from_secs(5)).code(), Some(0));
    assert!(!pid_path.exists(), "pid file left after a clean exit");
    fs::remove_dir_all(&dir).unwrap();
}

fn wait_gone(pid: u32, path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) || path.exists() {
        assert!(
            Instant::now() < deadline,
            "daemon {pid} still running or {} left",
            path.display()
        );
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn daemonize_detaches_and_reports_ready() {
    let dir = scratch_dir("daemonize");
    let pid_path = dir.join("gannet.pid");
    let port = free_port();
    let mut args = base_args(port);
    args.extend([
        "-d".to_string(),
        "-P".to_string(),
        pid_path.display().to_string(),
    ]);
    let started = Instant::now();
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The command returns once the daemon serves: no polling needed.
    let text = fs::read_to_string(&pid_path).expect("pid file when -d returns");
    let pid: u32 = text.trim_end().parse().unwrap();
    assert_eq!(text, format!("{pid}\n"));
    let _guard = Detached(pid);
    assert!(alive(pid));
    assert!(version(port).unwrap().starts_with("VERSION "));

    // Detached: not a session leader of ours, stdio on /dev/null, cwd /.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let (session, tty) = (fields[3], fields[4]);
    // SAFETY: getsid(0) asks for our own session id and cannot fail.
    let our_session = unsafe { libc::getsid(0) };
    assert_ne!(session, our_session.to_string(), "same session as the test");
    assert_ne!(session, pid.to_string(), "the daemon is a session leader");
    assert_eq!(tty, "0", "the daemon has a controlling terminal");
    for fd in 0..3 {
        let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(target, Path::new("/dev/null"), "fd {fd}");
    }
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        Path::new("/")
    );
    if is_root() {
        let uids = proc_status_field(pid, "Uid:");
        assert_eq!(uids.split_whitespace().next(), Some("65534"));
    }

    send_signal(pid, libc::SIGTERM);
    wait_gone(pid, &pid_path);
    assert!(version(port).is_none());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn daemonize_reports_a_bind_failure() {
    // The port is taken: with -d the shell must still see the failure
    // (memcached's bind failure status is 71).
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let mut args = base_args(port);
    args.push("-d".to_string());
    let out = run(&args);
    assert_eq!(out.status.code(), Some(71), "{out:?}");
    drop(holder);
}

#[test]
fn connection_limit_beyond_the_kernel_exits_71() {
    // More descriptors than the kernel allows any process (fs.nr_open):
    // memcached prints this message and exits 71, root or not.
    let nr_open: u64 = fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let port = free_port();
    let mut args = base_args(port);
    args.extend(["-c".to_string(), (nr_open * 2).to_string()]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(71), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "failed to set rlimit for open files. \
         Try starting as root or requesting smaller maxconns value."
    );
}

/// Start `program` with `args` and a core file size limit of 0, hard
/// limit `hard`; returns its exit status if it exits within 3 s, or, once it
/// serves, the "Max core file size" soft limit from /proc.
fn core_limit_with(
    program: &str,
    args: &[&str],
    hard: libc::rlim_t,
) -> Result<String, (ExitStatus, String)> {
    use std::os::unix::process::CommandExt;
    let port = free_port();
    let mut cmd = Command::new(program);
    cmd.args(base_args(port))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only setrlimit (async-signal-safe) runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            let zero = libc::rlimit {
                rlim_cur: 0,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_CORE, &zero) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            return Err((status, err));
        }
        if version(port).is_some() {
            let limits = fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
            let _ = child.kill();
            let _ = child.wait();
            let line = limits
                .lines()
                .find(|l| l.starts_with("Max core file size"))
                .expect("Max core file size")
                .to_string();
            return Ok(line.split_whitespace().nth(4).unwrap().to_string());
        }
        assert!(
            Instant::now() < deadline,
            "{program} neither served nor exited"
        );
        sleep(Duration::from_millis(20));
    }
}

/// `-r` raises the core file size limit as memcached does: to unlimited
/// when allowed (CAP_SYS_RESOURCE, or an unlimited hard limit), else the
/// soft limit to the hard one; a soft limit still 0 exits 71 with
/// memcached's message. Without `-r` the limit is left alone. Each case
/// is compared with memcached under the same limits.
#[test]
fn core_dumps_flag_raises_the_core_limit_like_memcached() {
    let memcached = memcached_bin();
    assert_eq!(core_limit_with(BIN, &[], 1 << 20), Ok("0".to_string()));
    for hard in [0, 1 << 20, libc::RLIM_INFINITY] {
        let gannet = core_limit_with(BIN, &["-r"], hard);
        assert_eq!(
            gannet,
            core_limit_with(memcached, &["-r"], hard),
            "hard {hard}"
        );
        match &gannet {
            Ok(soft) => assert_ne!(soft, "0", "hard {hard}"),
            Err((status, err)) => {
                assert_eq!((hard, status.code()), (0, Some(71)));
                assert_eq!(err, "failed to ensure corefile creation\n");
            }
        }
    }
    assert_eq!(
        core_limit_with(BIN, &["-r"], libc::RLIM_INFINITY),
        Ok("unlimited".to_string())
    );
}

/// Owner, group and mode of the unix socket a server started with `-s`
/// creates (once a client can connect to it).
fn socket_owner_with(bin: &str, args: &[String], path: &Path) -> (u32, u32, u32) {
    let _ = fs::remove_file(path);
    let _server = Daemon::start_bin(bin, args);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(Instant::now() < deadline, "{bin}: no socket at {path:?}");
        sleep(Duration::from_millis(20));
    }
    let meta = fs::metadata(path).unwrap();
    (meta.uid(), meta.gid(), meta.mode() & 0o777)
}

/// Started by root with `-u`, the unix socket belongs to that user and
/// its group, as memcached's does (it creates the socket after dropping
/// privileges), so `-a 0770` lets the user's group in. gannet binds as
/// root and hands the file over before `listen`: the test reads the owner
/// as soon as a connect succeeds, so a hand-over after `listen` races it.
#[test]
fn unix_socket_belongs_to_the_user_like_memcached() {
    if !is_root() {
        return;
    }
    let memcached = memcached_bin();
    let dir = scratch_dir("sock");
    let path = dir.join("s.sock");
    let args: Vec<String> = ["-u", "nobody", "-U", "0", "-t", "1", "-a", "0770", "-s"]
        .iter()
        .map(|s| s.to_string())
        .chain([path.display().to_string()])
        .collect();
    let gannet = socket_owner_with(BIN, &args, &path);
    let theirs = socket_owner_with(memcached, &args, &path);
    assert_eq!(gannet, theirs);
    assert_eq!(gannet.0, NOBODY);
    assert_eq!(gannet.2, 0o770);
    let _ = fs::remove_dir_all(&dir);
}
