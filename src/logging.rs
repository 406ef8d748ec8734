//! Logging: memcached's `-v` levels through `log` and `env_logger`,
//! switched at run time by the `verbosity` command.
//!
//! `-v` is warnings and info, `-vv` adds memcached's request and reply
//! lines (`<fd get foo`, `>fd END`, at debug level under the [`WIRE`]
//! target, printed bare as memcached prints them), `-vvv` everything.
//! The logger itself lets every record through; `log::max_level` is the
//! switch, so `verbosity N` changes what is logged with one store and a
//! disabled level costs one relaxed load and a compare at each call site
//! (every call site checks the level before formatting anything).
//!
//! `GANNET_LOG` (env_logger's filter syntax), when set, selects records
//! by module on top of the `-v` default; the level `verbosity` sets is
//! then the ceiling of what it selects.

use std::io::Write;

use log::LevelFilter;

/// The target of memcached's `-vv` request and reply lines.
pub const WIRE: &str = "gannet::wire";

/// The environment variable holding an env_logger filter.
pub const ENV: &str = "GANNET_LOG";

/// Write one line to stderr unconditionally, as memcached's `fprintf`
/// does, for the messages memcached prints whatever the verbosity.
///
/// Why not `eprintln!`: it panics when the write fails, and gannet's panic
/// policy aborts the process. With SIGPIPE ignored, a stderr pipe whose
/// reader has gone fails every write (EPIPE); that must cost the message,
/// not the server.
pub fn stderr_line(args: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "{args}");
}

/// The log level of a memcached verbosity level.
pub fn level_for(verbosity: u32) -> LevelFilter {
    match verbosity {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// Install the process logger (stderr) for `-v` given `verbose` times.
/// Does nothing if a logger is already installed.
pub fn init(verbose: u8) {
    let spec = std::env::var(ENV).ok().filter(|s| !s.trim().is_empty());
    let start = level_for(u32::from(verbose));
    let mut b = env_logger::Builder::new();
    match &spec {
        Some(spec) => {
            b.filter_level(start);
            b.parse_filters(spec);
        }
        // Permissive: the max level alone decides.
        None => {
            b.filter_level(LevelFilter::Trace);
        }
    }
    b.format(format).target(env_logger::Target::Stderr);
    let logger = b.build();
    let max = match spec {
        Some(_) => logger.filter().max(start),
        None => start,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
}

/// `verbosity N`: from now on log what `-v` given N times logs.
pub fn set_verbosity(verbosity: u32) {
    log::set_max_level(level_for(verbosity));
}

/// memcached's request/reply lines bare; everything else with time,
/// level and module.
fn format(buf: &mut env_logger::fmt::Formatter, r: &log::Record<'_>) -> std::io::Result<()> {
    if r.target() == WIRE {
        writeln!(buf, "{}", r.args())
    } else {
        writeln!(
            buf,
            "[{} {:<5} {}] {}",
            buf.timestamp(),
            r.level(),
            r.target(),
            r.args()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_levels_are_memcacheds() {
        assert_eq!(level_for(0), LevelFilter::Warn);
        assert_eq!(level_for(1), LevelFilter::Info);
        assert_eq!(level_for(2), LevelFilter::Debug);
        assert_eq!(level_for(3), LevelFilter::Trace);
    }
}
