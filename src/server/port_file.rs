//! memcached's `MEMCACHED_PORT_FILENAME`: where a server started with
//! `-p -1` (or `-U -1`) says which ports the kernel gave it.
//!
//! Test harnesses (memcached's own, and gannet's) start servers this way
//! so that no port has to be guessed free beforehand. The lines go to
//! `<name>.lck` as each address is bound (`TCP INET: 41234`,
//! `TCP INET6: ...`, `UDP INET: ...`), and the file is renamed to `<name>`
//! once every listener is up, so a reader that sees `<name>` sees it
//! whole. A file that cannot be opened is reported and the server starts
//! anyway, as memcached does.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::listener::Transport;
use crate::daemon::os_text;

/// The environment variable memcached reads.
pub const VAR: &str = "MEMCACHED_PORT_FILENAME";

/// An open `<name>.lck`.
pub struct PortFile {
    file: File,
    tmp: PathBuf,
    name: PathBuf,
}

impl PortFile {
    /// The port file the environment asks for, or `None` (unset, or it
    /// cannot be opened: then memcached's line is printed).
    pub fn from_env() -> Option<PortFile> {
        let name = PathBuf::from(std::env::var_os(VAR)?);
        let mut tmp = name.clone().into_os_string();
        tmp.push(".lck");
        let tmp = PathBuf::from(tmp);
        match OpenOptions::new().append(true).create(true).open(&tmp) {
            Ok(file) => Some(PortFile { file, tmp, name }),
            Err(e) => {
                eprintln!("Failed to open \"{}\": {}", tmp.display(), os_text(&e));
                None
            }
        }
    }

    /// Note one bound address (its real port, after `-1`).
    pub fn record(&mut self, transport: Transport, addr: SocketAddr) {
        let family = if addr.is_ipv4() { "INET" } else { "INET6" };
        let proto = match transport {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
        };
        // memcached ignores write errors here too.
        let _ = writeln!(self.file, "{proto} {family}: {}", addr.port());
    }

    /// Every listener is up: publish the file under its name.
    pub fn finish(self) {
        drop(self.file);
        let _ = std::fs::rename(&self.tmp, &self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_then_rename() {
        let dir = std::env::temp_dir().join(format!("gannet-portfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let name = dir.join("ports");
        let tmp = dir.join("ports.lck");
        let mut f = PortFile {
            file: OpenOptions::new()
                .append(true)
                .create(true)
                .open(&tmp)
                .unwrap(),
            tmp: tmp.clone(),
            name: name.clone(),
        };
        f.record(Transport::Tcp, "127.0.0.1:5".parse().unwrap());
        f.record(Transport::Tcp, "[::1]:6".parse().unwrap());
        f.record(Transport::Udp, "127.0.0.1:7".parse().unwrap());
        assert!(!name.exists());
        f.finish();
        assert!(!tmp.exists());
        assert_eq!(
            std::fs::read_to_string(&name).unwrap(),
            "TCP INET: 5\nTCP INET6: 6\nUDP INET: 7\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
