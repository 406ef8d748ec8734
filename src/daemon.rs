//! Process set-up that a Unix daemon does once, before it serves: the
//! checks and steps behind memcached's `-u`, `-c`, `-d`, `-k` and `-P`.
//!
//! Why a module of its own: these steps are ordered by the kernel's rules,
//! not by taste, and getting the order wrong fails silently. `main` calls
//! them in this order:
//!
//! 1. parse the command line;
//! 2. [`resolve_user`]: root without `-u` exits 64 and an unknown user 67
//!    (memcached's codes and messages), before anything else happens;
//! 3. [`enable_core_dumps`] for `-r`, then [`raise_nofile`]: while still
//!    root, so the hard limits can be raised (for `-c`);
//! 4. bind the listeners: still root, so ports below 1024 work (memcached
//!    drops privileges before binding; gannet binds first, and a bind
//!    failure reaches the shell even with `-d`);
//! 5. [`drop_privileges`] (only when root): supplementary groups, gid, uid;
//! 6. [`daemonize`] for `-d`: fork only copies the calling thread, so this
//!    must come before any thread is started (it refuses otherwise);
//! 7. [`lock_memory`] for `-k`: memory locks are not inherited across
//!    fork, so after daemonizing;
//! 8. [`PidFile::create`] for `-P`: after the fork (the pid is final) and
//!    after dropping privileges (the user that writes the file is the one
//!    that removes it at exit, as in memcached);
//! 9. start the worker threads, then [`Detached::ready`]: the shell that
//!    ran `gannet -d` gets its exit status only once the daemon serves.
//!
//! On a clean exit `main` calls [`PidFile::remove`].
//!
//! Messages go to stderr and use memcached's wording where memcached has
//! one, so scripts that grep them keep working.

use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// sysexits.h codes that memcached uses.
pub mod exit_code {
    /// Command line misuse (`EX_USAGE`): root without `-u`.
    pub const USAGE: i32 = 64;
    /// Unknown user (`EX_NOUSER`).
    pub const NO_USER: i32 = 67;
    /// Internal software error (`EX_SOFTWARE`).
    pub const SOFTWARE: i32 = 70;
    /// Operating system error (`EX_OSERR`): bind, rlimit, setuid, fork.
    pub const OS_ERR: i32 = 71;
}

/// Descriptors gannet needs beyond one per connection: listeners, the
/// poll instances and wakers of the worker threads, the pid file, logs.
pub const RESERVED_FDS: u64 = 64;

/// Why a daemon set-up step failed. `Display` prints memcached's message
/// for stderr where memcached has one (the OS error, when there is one, is
/// the `source`); [`DaemonError::exit_code`] is the status to exit with.
#[derive(Debug)]
pub enum DaemonError {
    /// Running as root and no `-u` was given.
    RootWithoutUser,
    /// The `-u` user does not exist.
    UnknownUser(String),
    /// Looking up the `-u` user failed for another reason.
    UserLookup(String, io::Error),
    /// `setgroups`/`setgid`/`setuid` failed.
    DropPrivileges(String, io::Error),
    /// `RLIMIT_NOFILE` cannot cover `-c` connections.
    NoFileLimit { wanted: u64, err: io::Error },
    /// `-r`: the core file size limit stays 0.
    CoreLimit,
    /// `daemonize` was called with more than one thread running.
    Threads(usize),
    /// `fork`, `setsid`, `pipe` or `/dev/null` failed while daemonizing.
    Daemonize(io::Error),
    /// `mlockall` failed (memcached only warns and goes on).
    LockMemory(io::Error),
    /// The pid file could not be written (memcached only warns).
    PidFile(PathBuf, io::Error),
}

impl DaemonError {
    /// The process exit status memcached uses for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            DaemonError::RootWithoutUser => exit_code::USAGE,
            DaemonError::UnknownUser(_) => exit_code::NO_USER,
            DaemonError::Threads(_) => exit_code::SOFTWARE,
            DaemonError::UserLookup(..)
            | DaemonError::DropPrivileges(..)
            | DaemonError::NoFileLimit { .. }
            | DaemonError::CoreLimit
            | DaemonError::Daemonize(_)
            | DaemonError::LockMemory(_)
            | DaemonError::PidFile(..) => exit_code::OS_ERR,
        }
    }

    /// True for the failures memcached reports and then ignores (`-k`, `-P`).
    pub fn is_warning(&self) -> bool {
        matches!(self, DaemonError::LockMemory(_) | DaemonError::PidFile(..))
    }
}

/// `strerror` text without the " (os error N)" suffix Rust adds, to match
/// memcached's messages.
pub(crate) fn os_text(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::RootWithoutUser => write!(f, "can't run as root without the -u switch"),
            DaemonError::UnknownUser(user) => {
                write!(f, "can't find the user {user} to switch to")
            }
            DaemonError::UserLookup(user, err) => {
                write!(f, "can't look up the user {user}: {}", os_text(err))
            }
            DaemonError::DropPrivileges(user, _) => {
                write!(f, "failed to assume identity of user {user}")
            }
            DaemonError::NoFileLimit { .. } => write!(
                f,
                "failed to set rlimit for open files. \
                 Try starting as root or requesting smaller maxconns value."
            ),
            DaemonError::CoreLimit => write!(f, "failed to ensure corefile creation"),
            DaemonError::Threads(n) => write!(
                f,
                "cannot daemonize with {n} threads running (fork keeps only one)"
            ),
            DaemonError::Daemonize(_) => write!(f, "failed to daemon() in order to daemonize"),
            DaemonError::LockMemory(err) => write!(
                f,
                "warning: -k invalid, mlockall() failed: {}",
                os_text(err)
            ),
            DaemonError::PidFile(path, err) => write!(
                f,
                "Could not open the pid file {}.tmp for writing: {}",
                path.display(),
                os_text(err)
            ),
        }
    }
}

impl std::error::Error for DaemonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DaemonError::UserLookup(_, err)
            | DaemonError::DropPrivileges(_, err)
            | DaemonError::NoFileLimit { err, .. }
            | DaemonError::Daemonize(err)
            | DaemonError::LockMemory(err)
            | DaemonError::PidFile(_, err) => Some(err),
            DaemonError::RootWithoutUser
            | DaemonError::UnknownUser(_)
            | DaemonError::CoreLimit
            | DaemonError::Threads(_) => None,
        }
    }
}

/// The account named by `-u`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

fn is_root() -> bool {
    // SAFETY: getuid and geteuid take no arguments, cannot fail and touch
    // no memory of ours.
    unsafe { libc::getuid() == 0 || libc::geteuid() == 0 }
}

/// `getpwnam_r` into `buf`; `Ok(None)` when there is no such user.
fn getpwnam(name: &CString, buf: &mut [u8]) -> io::Result<Option<(u32, u32)>> {
    // SAFETY: passwd is plain old data, so all-zero is a valid value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: name is NUL-terminated; pwd, buf and found are valid for the
    // whole call and buf.len() is buf's real length. The strings pwd points
    // into live in buf, and we copy only the integer ids out of pwd.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    if found.is_null() {
        return Ok(None);
    }
    Ok(Some((pwd.pw_uid, pwd.pw_gid)))
}

/// Look a user up by name, growing the buffer on `ERANGE`.
pub fn lookup_user(name: &str) -> Result<Option<User>, DaemonError> {
    let lookup_err = |err| DaemonError::UserLookup(name.to_string(), err);
    let cname = CString::new(name).map_err(|_| DaemonError::UnknownUser(name.to_string()))?;
    let mut buf = vec![0u8; 1024];
    loop {
        match getpwnam(&cname, &mut buf) {
            Ok(found) => {
                return Ok(found.map(|(uid, gid)| User {
                    name: name.to_string(),
                    uid,
                    gid,
                }))
            }
            Err(err) if err.raw_os_error() == Some(libc::ERANGE) && buf.len() < 1 << 20 => {
                let len = buf.len() * 2;
                buf.resize(len, 0);
            }
            Err(err) => return Err(lookup_err(err)),
        }
    }
}

/// Step 2: decide whose identity the daemon will take.
///
/// As in memcached, `-u` matters only to root: a non-root process ignores
/// it (`Ok(None)`), root must name a user that exists.
pub fn resolve_user(user: Option<&str>) -> Result<Option<User>, DaemonError> {
    if !is_root() {
        return Ok(None);
    }
    let name = match user {
        Some(name) if !name.is_empty() => name,
        _ => return Err(DaemonError::RootWithoutUser),
    };
    match lookup_user(name)? {
        Some(found) => Ok(Some(found)),
        None => Err(DaemonError::UnknownUser(name.to_string())),
    }
}

fn get_nofile() -> io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim)
}

fn set_nofile(lim: &libc::rlimit) -> io::Result<()> {
    // SAFETY: lim is a valid rlimit that the kernel only reads.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Step 3, `-r` (memcached's "maximize core file limit"): the core file
/// size limit goes to unlimited, or, when that is not allowed, the soft
/// limit up to the hard one. Fails (memcached's message, exit 71) only
/// when the soft limit is still 0, so no core could be written.
pub fn enable_core_dumps() -> Result<(), DaemonError> {
    let get = || {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: lim is a valid, writable rlimit for the call.
        (unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) } == 0).then_some(lim)
    };
    let set = |v: libc::rlim_t| {
        let lim = libc::rlimit {
            rlim_cur: v,
            rlim_max: v,
        };
        // SAFETY: lim is a valid rlimit that the kernel only reads.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &lim) == 0 }
    };
    if let Some(old) = get() {
        if !set(libc::RLIM_INFINITY) {
            set(old.rlim_max);
        }
    }
    match get() {
        Some(lim) if lim.rlim_cur != 0 => Ok(()),
        _ => Err(DaemonError::CoreLimit),
    }
}

/// Step 3: make room for `max_conns` connections plus [`RESERVED_FDS`].
///
/// Raises the soft limit up to the hard one, and the hard one too when
/// allowed (root). Never lowers a limit. Fails only when fewer than
/// `max_conns` descriptors can be had, as memcached does. Returns the soft
/// limit now in force.
pub fn raise_nofile(max_conns: usize) -> Result<u64, DaemonError> {
    let wanted = (max_conns as u64).saturating_add(RESERVED_FDS);
    let fail = |err| DaemonError::NoFileLimit {
        wanted: max_conns as u64,
        err,
    };
    let cur = get_nofile().map_err(fail)?;
    if cur.rlim_cur >= wanted {
        return Ok(cur.rlim_cur);
    }
    if cur.rlim_max < wanted {
        // Only a privileged process may raise the hard limit; try, and
        // fall back to the hard limit we have.
        let both = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: wanted,
        };
        if set_nofile(&both).is_ok() {
            return Ok(wanted);
        }
    }
    let soft = wanted.min(cur.rlim_max);
    let next = libc::rlimit {
        rlim_cur: soft,
        rlim_max: cur.rlim_max,
    };
    set_nofile(&next).map_err(fail)?;
    if soft < max_conns as u64 {
        return Err(fail(io::Error::from_raw_os_error(libc::EPERM)));
    }
    Ok(soft)
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_groups(gid: u32) -> io::Result<()> {
    let groups = [gid as libc::gid_t];
    // SAFETY: groups is a valid array of exactly groups.len() gids.
    check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })
}

fn set_gid(gid: u32) -> io::Result<()> {
    // SAFETY: setgid takes a plain integer and touches no memory of ours.
    check(unsafe { libc::setgid(gid) })
}

fn set_uid(uid: u32) -> io::Result<()> {
    // SAFETY: setuid takes a plain integer and touches no memory of ours.
    check(unsafe { libc::setuid(uid) })
}

/// Step 5: become `user` for good (supplementary groups, then gid, then
/// uid: after setuid the others are no longer allowed).
pub fn drop_privileges(user: &User) -> Result<(), DaemonError> {
    let fail = |err| DaemonError::DropPrivileges(user.name.clone(), err);
    set_groups(user.gid).map_err(fail)?;
    set_gid(user.gid).map_err(fail)?;
    set_uid(user.uid).map_err(fail)?;
    // Root must not be able to come back.
    if user.uid != 0 && set_uid(0).is_ok() {
        return Err(fail(io::Error::from_raw_os_error(libc::EPERM)));
    }
    Ok(())
}

/// How many threads this process has (entries of /proc/self/task).
pub fn thread_count() -> io::Result<usize> {
    Ok(fs::read_dir("/proc/self/task")?.count())
}

fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the caller has checked that this process has one thread, so
    // the child gets a consistent copy of every lock and allocator state.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

fn setsid() -> io::Result<()> {
    // SAFETY: setsid takes no arguments and touches no memory of ours.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Leave the process without running destructors or flushing buffers that
/// belong to the other side of a fork.
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process at once; nothing runs after it.
    unsafe { libc::_exit(code) }
}

fn pipe() -> io::Result<(fs::File, fs::File)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
    let files = unsafe { (fs::File::from_raw_fd(fds[0]), fs::File::from_raw_fd(fds[1])) };
    Ok(files)
}

fn redirect(null: &fs::File, target: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: both descriptors are open; dup2 replaces target atomically.
    if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid, writable int; pid is our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// Let the default actions of all signals reach this thread again, so
/// that Ctrl-C still ends a shell's `gannet -d` that waits for its daemon
/// (main blocks the signals it takes with `sigwait`).
fn unblock_signals() {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it and
    // pthread_sigmask only reads it.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// The parent of `daemonize`: wait for the daemon's verdict and exit
/// with it (0 once ready; 1 if the daemon died before saying so).
fn wait_for_daemon(mut from_daemon: fs::File, child: libc::pid_t) -> ! {
    use std::io::Read;
    unblock_signals();
    let mut byte = [0u8; 1];
    let code = loop {
        match from_daemon.read(&mut byte) {
            Ok(1) => break i32::from(byte[0]),
            Ok(_) => break 1,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break 1,
        }
    };
    reap(child);
    exit_now(code)
}

/// The daemon side of `-d`, returned by [`daemonize`]. Tell the waiting
/// shell how start-up went with [`Detached::ready`] or [`Detached::fail`];
/// if the daemon exits without either, the shell sees status 1. (If it
/// runs on without either, the shell waits: always call one.)
#[derive(Debug)]
#[must_use = "call ready() once serving, or the shell that ran gannet -d waits"]
pub struct Detached {
    to_parent: fs::File,
    keep_stdio: bool,
}

impl Detached {
    /// Start-up is done: the original process exits 0, and stdout/stderr
    /// move to /dev/null (unless `-d` came with `-v`, as in memcached).
    ///
    /// stdout and stderr move first: once the shell's command returns,
    /// the daemon must no longer hold the caller's terminal or pipe (a
    /// caller reading them, such as `ssh host gannet -d`, would wait).
    pub fn ready(mut self) -> io::Result<()> {
        let moved = if self.keep_stdio {
            Ok(())
        } else {
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .and_then(|null| {
                    redirect(&null, libc::STDOUT_FILENO)?;
                    redirect(&null, libc::STDERR_FILENO)
                })
        };
        self.to_parent.write_all(&[0])?;
        moved
    }

    /// Start-up failed: the original process exits with `code` (clamped to
    /// 1..=255). The caller then exits too.
    pub fn fail(mut self, code: i32) {
        let byte = u8::try_from(code.clamp(1, 255)).unwrap_or(1);
        // The parent exits 1 on a closed pipe anyway; nothing more to do.
        let _ = self.to_parent.write_all(&[byte]);
    }
}

/// Step 6 (`-d`): detach from the terminal with a double fork and
/// `setsid`, `chdir /`, stdin from /dev/null.
///
/// Returns in the daemon only; the original process waits until the
/// daemon calls [`Detached::ready`] and exits with the daemon's verdict,
/// and the middle process exits at once, so the daemon is not a session
/// leader and can never get a controlling terminal again. Refuses to run
/// with more than one thread.
pub fn daemonize(keep_stdio: bool) -> Result<Detached, DaemonError> {
    let threads = thread_count().map_err(DaemonError::Daemonize)?;
    if threads != 1 {
        return Err(DaemonError::Threads(threads));
    }
    let null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(DaemonError::Daemonize)?;
    let (from_daemon, to_parent) = pipe().map_err(DaemonError::Daemonize)?;
    let first = fork().map_err(DaemonError::Daemonize)?;
    if first > 0 {
        drop(to_parent);
        wait_for_daemon(from_daemon, first);
    }
    // The middle process: a new session, then fork again and leave.
    drop(from_daemon);
    let detached = Detached {
        to_parent,
        keep_stdio,
    };
    if setsid().is_err() {
        detached.fail(exit_code::OS_ERR);
        exit_now(exit_code::OS_ERR);
    }
    match fork() {
        Ok(0) => {}
        Ok(_) => exit_now(0),
        Err(_) => {
            detached.fail(exit_code::OS_ERR);
            exit_now(exit_code::OS_ERR);
        }
    }
    // The daemon.
    if let Err(err) = std::env::set_current_dir("/").and_then(|()| redirect(&null, 0)) {
        detached.fail(exit_code::OS_ERR);
        return Err(DaemonError::Daemonize(err));
    }
    Ok(detached)
}

/// Step 7 (`-k`): lock all memory, current and future, as memcached does;
/// only a warning when that cannot work (`is_warning`).
///
/// Why the limit is checked first: once `MCL_FUTURE` is set, every later
/// mapping (each thread's stack, every slab page) must be locked too, and
/// past `RLIMIT_MEMLOCK` the kernel refuses it (EAGAIN). memcached's call
/// fails outright under a small limit, because its process is already
/// larger than the limit when it makes it, and memcached then runs
/// unlocked with a warning. gannet's process is still small at that point,
/// so the call would succeed and the server could then start no thread and
/// take no page. So a limit that cannot hold `needed` bytes (the item
/// memory, the stacks and a margin) is reported as the failure memcached
/// would see (ENOMEM), unless the process may lock past its limit
/// (`CAP_IPC_LOCK`).
pub fn lock_memory(needed: u64) -> Result<(), DaemonError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limit into `lim`, which we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if rc == 0
        && lim.rlim_cur != libc::RLIM_INFINITY
        && lim.rlim_cur < needed
        && !may_lock_past_limit()
    {
        return Err(DaemonError::LockMemory(io::Error::from_raw_os_error(
            libc::ENOMEM,
        )));
    }
    // SAFETY: mlockall takes flags only and touches no memory of ours.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if rc != 0 {
        return Err(DaemonError::LockMemory(io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether this process has `CAP_IPC_LOCK` in its effective set (read from
/// `/proc/self/status`; false when that cannot be read).
fn may_lock_past_limit() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// The `-P` pid file. Written atomically (`<path>.tmp`, then rename) and
/// world-readable whatever the umask; [`PidFile::remove`] (or drop)
/// deletes it if it still holds this process's pid.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Step 8: write this process's pid followed by a newline.
    pub fn create(path: &Path) -> Result<PidFile, DaemonError> {
        let fail = |err| DaemonError::PidFile(path.to_path_buf(), err);
        let pid = std::process::id();
        let mut tmp_name = path.as_os_str().to_os_string();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let write = || -> io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.set_permissions(fs::Permissions::from_mode(0o644))?;
            writeln!(file, "{pid}")?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        };
        if let Err(err) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(fail(err));
        }
        Ok(PidFile {
            path: path.to_path_buf(),
            pid,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Delete the file (on a clean exit). Leaves a file that another
    /// process has since rewritten alone.
    pub fn remove(self) {
        // Drop does the work; this names the intent at the call site.
        drop(self);
    }

    fn remove_if_ours(&self) {
        if std::process::id() != self.pid {
            return;
        }
        let ours = fs::read(&self.path)
            .map(|text| text.trim_ascii() == self.pid.to_string().as_bytes())
            .unwrap_or(false);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        self.remove_if_ours();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gannet-daemon-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn root_needs_a_user_and_the_user_must_exist() {
        if is_root() {
            let err = resolve_user(None).unwrap_err();
            assert_eq!(err.exit_code(), 64);
            assert_eq!(err.to_string(), "can't run as root without the -u switch");
            let err = resolve_user(Some("no-such-user-gannet")).unwrap_err();
            assert_eq!(err.exit_code(), 67);
            assert_eq!(
                err.to_string(),
                "can't find the user no-such-user-gannet to switch to"
            );
            let root = resolve_user(Some("root")).unwrap().unwrap();
            assert_eq!((root.uid, root.gid), (0, 0));
        } else {
            // memcached ignores -u when it is not root.
            assert_eq!(resolve_user(None).unwrap(), None);
            assert_eq!(resolve_user(Some("no-such-user-gannet")).unwrap(), None);
        }
    }

    #[test]
    fn lookup_finds_root_and_not_strangers() {
        let root = lookup_user("root").unwrap().unwrap();
        assert_eq!(root.uid, 0);
        assert_eq!(lookup_user("no-such-user-gannet").unwrap(), None);
        assert!(matches!(
            lookup_user("nul\0byte"),
            Err(DaemonError::UnknownUser(_))
        ));
    }

    #[test]
    fn nofile_covers_the_connections() {
        let soft = raise_nofile(100).unwrap();
        assert!(soft >= 100 + RESERVED_FDS);
        assert_eq!(get_nofile().unwrap().rlim_cur, soft);
        // Never lowers.
        assert_eq!(raise_nofile(1).unwrap(), soft);
    }

    #[test]
    fn messages_match_memcached() {
        let err = DaemonError::NoFileLimit {
            wanted: 1 << 40,
            err: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert_eq!(err.exit_code(), 71);
        assert_eq!(
            err.to_string(),
            "failed to set rlimit for open files. \
             Try starting as root or requesting smaller maxconns value."
        );
        let err = DaemonError::LockMemory(io::Error::from_raw_os_error(libc::ENOMEM));
        assert!(err.is_warning());
        assert_eq!(
            err.to_string(),
            "warning: -k invalid, mlockall() failed: Cannot allocate memory"
        );
        let err = DaemonError::DropPrivileges("x".into(), io::Error::from_raw_os_error(1));
        assert_eq!(err.to_string(), "failed to assume identity of user x");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn daemonize_refuses_a_threaded_process() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let helper = std::thread::spawn(move || rx.recv().ok());
        let result = daemonize(false);
        drop(tx);
        helper.join().unwrap();
        match result {
            Err(err @ DaemonError::Threads(n)) => {
                assert!(n >= 2);
                assert_eq!(err.exit_code(), 70);
            }
            other => panic!("expected Threads, got {other:?}"),
        }
    }

    #[test]
    fn pid_file_is_written_and_removed() {
        let dir = scratch_dir("pid");
        let path = dir.join("gannet.pid");
        let pid_file = PidFile::create(&path).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert!(!dir.join("gannet.pid.tmp").exists());
        assert_eq!(pid_file.path(), path);
        pid_file.remove();
        assert!(!path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pid_file_of_another_process_is_left_alone() {
        let dir = scratch_dir("pid-other");
        let path = dir.join("gannet.pid");
        let pid_file = PidFile::create(&path).unwrap();
        fs::write(&path, "1\n").unwrap();
        pid_file.remove();
        assert_eq!(fs::read_to_string(&path).unwrap(), "1\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pid_file_error_reads_like_memcached() {
        let err = PidFile::create(Path::new("/nonexistent-gannet/x.pid")).unwrap_err();
        assert!(err.is_warning());
        assert_eq!(
            err.to_string(),
            "Could not open the pid file /nonexistent-gannet/x.pid.tmp for writing: \
             No such file or directory"
        );
    }
}
