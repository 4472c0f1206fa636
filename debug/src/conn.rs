//! Where gdb connects (`tcp:[HOST:]PORT`, `unix:PATH`) and the connection
//! itself: buffered both ways, because gdbstub reads and writes one byte
//! at a time and a system call per byte would make every packet slow.

use crate::error::{Error, Result};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

/// The address given to `--gdb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GdbAddr {
    /// `tcp:[HOST:]PORT`; HOST defaults to 127.0.0.1 (a debugger port is
    /// not something to offer the network by default).
    Tcp(String),
    /// `unix:PATH`.
    Unix(PathBuf),
}

impl std::str::FromStr for GdbAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<GdbAddr> {
        let bad = |why: &str| Error::Address(format!("--gdb {s}: {why}"));
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty socket path"));
            }
            return Ok(GdbAddr::Unix(PathBuf::from(path)));
        }
        let Some(rest) = s.strip_prefix("tcp:") else {
            return Err(bad("expected tcp:[HOST:]PORT or unix:PATH"));
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, port),
            None => ("127.0.0.1", rest),
        };
        let port: u16 = port
            .parse()
            .map_err(|_| bad(&format!("'{port}' is not a port number")))?;
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        Ok(GdbAddr::Tcp(format!("{host}:{port}")))
    }
}

impl std::fmt::Display for GdbAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GdbAddr::Tcp(a) => write!(f, "tcp:{a}"),
            GdbAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A bound socket waiting for gdb. A Unix socket's file is removed when
/// this drops.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix domain socket at the path.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `addr`. A stale Unix socket file left by an earlier run is
    /// replaced; any other existing file is an error.
    pub fn bind(addr: &GdbAddr) -> Result<Listener> {
        let err = |e: std::io::Error| Error::Address(format!("--gdb {addr}: {e}"));
        match addr {
            GdbAddr::Tcp(a) => TcpListener::bind(a).map(Listener::Tcp).map_err(err),
            GdbAddr::Unix(path) => {
                use std::os::unix::fs::FileTypeExt;
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    if !meta.file_type().is_socket() {
                        return Err(Error::Address(format!(
                            "--gdb {addr}: exists and is not a socket"
                        )));
                    }
                    std::fs::remove_file(path).map_err(err)?;
                }
                UnixListener::bind(path)
                    .map(|l| Listener::Unix(l, path.clone()))
                    .map_err(err)
            }
        }
    }

    /// Where gdb should connect, for the "waiting for gdb" message.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("tcp:{a} (gdb: target remote {a})"),
                Err(_) => "tcp".into(),
            },
            Listener::Unix(_, p) => {
                format!("unix:{} (gdb: target remote {})", p.display(), p.display())
            }
        }
    }

    /// Waits for gdb to connect.
    pub fn accept(&self) -> Result<Conn> {
        let stream = match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().map_err(Error::Accept)?;
                // Each packet is written whole at flush: no need for Nagle.
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
            Listener::Unix(l, _) => Stream::Unix(l.accept().map_err(Error::Accept)?.0),
        };
        Ok(Conn {
            stream,
            rx: Vec::new(),
            rx_pos: 0,
            tx: Vec::with_capacity(4096),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }

    // Plain read(2)/write(2), not std's recv/send: these are the calls a
    // sandboxed vCPU thread may make.
    fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            // SAFETY: reads into `buf` from a socket we own.
            let n = unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn write_all(&self, mut buf: &[u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            // SAFETY: writes from `buf` to a socket we own.
            let n = unsafe { libc::write(self.fd(), buf.as_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            buf = &buf[n as usize..];
        }
        Ok(())
    }
}

/// The gdb connection.
pub struct Conn {
    stream: Stream,
    rx: Vec<u8>,
    rx_pos: usize,
    tx: Vec<u8>,
}

impl Conn {
    /// Whether a byte is buffered or waiting on the socket, without
    /// blocking.
    fn poll_byte(&mut self) -> std::io::Result<Option<u8>> {
        if self.rx_pos < self.rx.len() {
            return Ok(Some(self.rx[self.rx_pos]));
        }
        let mut pfd = libc::pollfd {
            fd: self.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::ppoll(&mut pfd, 1, &zero, std::ptr::null()) };
        if n <= 0 {
            return Ok(None);
        }
        self.fill()?;
        Ok(Some(self.rx[self.rx_pos]))
    }

    /// Reads what the socket has (at least one byte, blocking).
    fn fill(&mut self) -> std::io::Result<()> {
        let mut buf = [0u8; 4096];
        let n = self.stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.rx.clear();
        self.rx.extend_from_slice(&buf[..n]);
        self.rx_pos = 0;
        Ok(())
    }
}

impl AsRawFd for Conn {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.fd()
    }
}

impl gdbstub::conn::Connection for Conn {
    type Error = std::io::Error;

    fn write(&mut self, byte: u8) -> std::io::Result<()> {
        self.tx.push(byte);
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.tx.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = self.stream.write_all(&self.tx);
        self.tx.clear();
        result
    }
}

impl gdbstub::conn::ConnectionExt for Conn {
    fn read(&mut self) -> std::io::Result<u8> {
        if self.rx_pos >= self.rx.len() {
            self.fill()?;
        }
        let b = self.rx[self.rx_pos];
        self.rx_pos += 1;
        Ok(b)
    }

    fn peek(&mut self) -> std::io::Result<Option<u8>> {
        self.poll_byte()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_clear_errors() {
        assert_eq!(
            "tcp:1234".parse::<GdbAddr>().unwrap(),
            GdbAddr::Tcp("127.0.0.1:1234".into())
        );
        assert_eq!(
            "tcp:0.0.0.0:1".parse::<GdbAddr>().unwrap(),
            GdbAddr::Tcp("0.0.0.0:1".into())
        );
        assert_eq!(
            "unix:/tmp/g".parse::<GdbAddr>().unwrap(),
            GdbAddr::Unix("/tmp/g".into())
        );
        for bad in ["1234", "tcp:", "tcp:x", "tcp:70000", "unix:", "tcp::5"] {
            let e = bad.parse::<GdbAddr>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("--gdb {bad}:")), "{e}");
        }
    }

    #[test]
    fn unix_listener_replaces_a_stale_socket_and_refuses_a_file() {
        let dir = std::env::temp_dir().join(format!("ukvm-gdb-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s");
        let addr = GdbAddr::Unix(sock.clone());
        drop(UnixListener::bind(&sock).unwrap()); // stale socket file
        let l = Listener::bind(&addr).unwrap();
        drop(l);
        assert!(!sock.exists(), "socket file removed on drop");
        std::fs::write(&sock, b"x").unwrap();
        let e = Listener::bind(&addr).unwrap_err().to_string();
        assert!(e.contains("not a socket"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
