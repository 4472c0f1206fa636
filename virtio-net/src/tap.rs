//! A TAP interface opened by name through `/dev/net/tun`.
//!
//! ukvm attaches to an interface the administrator created (`ip tuntap add
//! NAME mode tap`); it never creates one, so a typo in `--net` fails with a
//! hint instead of leaving a stray interface behind. The file is
//! non-blocking and carries a virtio-net header in front of every frame
//! (IFF_VNET_HDR), so the guest's checksum/GSO metadata passes straight
//! through.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, RawFd};
use thiserror::Error;
use vmm_sys_util::ioctl::{ioctl_with_ref, ioctl_with_val};

/// Request numbers from <linux/if_tun.h>.
#[allow(missing_docs)]
mod nr {
    const TUNTAP: u32 = b'T' as u32;
    vmm_sys_util::ioctl_iow_nr!(TUNSETIFF, TUNTAP, 202, libc::c_int);
    vmm_sys_util::ioctl_iow_nr!(TUNSETOFFLOAD, TUNTAP, 208, libc::c_uint);
    vmm_sys_util::ioctl_ior_nr!(TUNGETVNETHDRSZ, TUNTAP, 215, libc::c_int);
    vmm_sys_util::ioctl_iow_nr!(TUNSETVNETHDRSZ, TUNTAP, 216, libc::c_int);
}
use nr::{TUNGETVNETHDRSZ, TUNSETIFF, TUNSETOFFLOAD, TUNSETVNETHDRSZ};

const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

/// TUNSETOFFLOAD flags: what the TAP may hand us without finishing it.
pub mod offload {
    /// Frames may carry a partial checksum.
    pub const CSUM: u32 = 0x01;
    /// TCP segmentation offload, IPv4.
    pub const TSO4: u32 = 0x02;
    /// TCP segmentation offload, IPv6.
    pub const TSO6: u32 = 0x04;
    /// TSO with ECN bits.
    pub const TSO_ECN: u32 = 0x08;
    /// UDP fragmentation offload.
    pub const UFO: u32 = 0x10;
}

/// Longest interface name (IFNAMSIZ less the NUL).
pub const MAX_NAME_LEN: usize = libc::IFNAMSIZ - 1;

/// Why a TAP could not be used. Each message names the cause and the fix.
#[derive(Debug, Error)]
pub enum TapError {
    /// The name cannot be an interface name.
    #[error(
        "'{0}' is not a valid interface name (1-{MAX_NAME_LEN} characters, no '/', ':' or spaces)"
    )]
    BadName(String),
    /// No interface of that name in this network namespace.
    #[error("no network interface '{0}': create it first with `ip tuntap add {0} mode tap` (add `user $USER` to use it without root)")]
    NoSuchInterface(String),
    /// /dev/net/tun is missing.
    #[error("cannot open /dev/net/tun ({0}): load the tun module (`modprobe tun`)")]
    NoTunDevice(io::Error),
    /// Not allowed to attach.
    #[error("permission denied attaching to TAP '{0}': run with CAP_NET_ADMIN, or use a TAP owned by this user (`ip tuntap add {0} mode tap user $USER`)")]
    PermissionDenied(String),
    /// Another process holds the interface.
    #[error("TAP '{0}' is busy: another process (a running VM?) is attached to it")]
    Busy(String),
    /// The interface exists but is not a single-queue TAP.
    #[error("'{0}' is not a TAP interface (a TUN, a multi-queue TAP or a regular interface?): create one with `ip tuntap add {0} mode tap`")]
    NotTap(String),
    /// Another ioctl failed.
    #[error("TAP '{name}': {what} failed: {err}")]
    Ioctl {
        /// Interface.
        name: String,
        /// The operation.
        what: &'static str,
        /// The error.
        err: io::Error,
    },
}

/// An open TAP interface.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    /// TUNSETOFFLOAD flags this kernel accepts.
    offloads: u32,
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Checks that `name` could name a network interface.
pub fn check_name(name: &str) -> Result<(), TapError> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0');
    if bad {
        return Err(TapError::BadName(name.to_string()));
    }
    Ok(())
}

fn interface_exists(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// How long a busy TAP is retried before it is refused. The kernel frees
/// a TAP's queue only after an RCU grace period (`tun_detach` waits in
/// `synchronize_net`, 7-12 ms measured here), and a monitor that just
/// exited may still be in it: ukvm leaves that close to its teardown
/// helper (`ukvm::fastexit`) so its own exit does not wait for it. A TAP
/// that another running VM holds is still refused, this much later.
const BUSY_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// TUNSETIFF, retried while the TAP is busy for at most [`BUSY_GRACE`].
fn attach(file: &File, req: &IfReq) -> io::Result<()> {
    let start = std::time::Instant::now();
    loop {
        // SAFETY: TUNSETIFF reads and writes an ifreq; `req` has its
        // layout (name, flags, padding to 40 bytes) and lives across the
        // call.
        if unsafe { ioctl_with_ref(file, TUNSETIFF(), req) } >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBUSY) || start.elapsed() >= BUSY_GRACE {
            return Err(err);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

impl Tap {
    /// Attaches to the existing TAP interface `name`.
    pub fn open(name: &str) -> Result<Tap, TapError> {
        check_name(name)?;
        if !interface_exists(name) {
            return Err(TapError::NoSuchInterface(name.to_string()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => {
                    TapError::PermissionDenied(name.to_string())
                }
                _ => TapError::NoTunDevice(e),
            })?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Err(err) = attach(&file, &req) {
            let name = name.to_string();
            return Err(match err.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => TapError::PermissionDenied(name),
                Some(libc::EBUSY) => TapError::Busy(name),
                Some(libc::EINVAL) => TapError::NotTap(name),
                _ => TapError::Ioctl {
                    name,
                    what: "TUNSETIFF",
                    err,
                },
            });
        }
        let mut tap = Tap {
            file,
            name: name.to_string(),
            offloads: 0,
        };
        tap.offloads = tap.probe_offloads();
        // Nothing the guest has not accepted: the probe may have left
        // offloads on, and so may a previous user of a persistent TAP
        // (the setting belongs to the interface, not to our fd). A hvt
        // guest, whose frames carry no header, never accepts any.
        tap.set_offload(0)?;
        Ok(tap)
    }

    /// Finds which offloads TUNSETOFFLOAD accepts. Linux takes them all
    /// in one call (except around 4.14, which refused UFO for a while), so
    /// that is tried first: each TUNSETOFFLOAD costs ~10 us here (it
    /// updates the interface's features), and six of them were a visible
    /// part of attaching a NIC. Otherwise each is tried on its own: TSO
    /// and UFO need CSUM, ECN needs TSO.
    fn probe_offloads(&self) -> u32 {
        let all = offload::CSUM | offload::TSO4 | offload::TSO6 | offload::TSO_ECN | offload::UFO;
        if self.set_offload(all).is_ok() {
            return all;
        }
        if self.set_offload(offload::CSUM).is_err() {
            return 0;
        }
        let mut ok = offload::CSUM;
        for f in [offload::TSO4, offload::TSO6, offload::UFO] {
            if self.set_offload(offload::CSUM | f).is_ok() {
                ok |= f;
            }
        }
        let tso = ok & (offload::TSO4 | offload::TSO6);
        if tso != 0
            && self
                .set_offload(offload::CSUM | tso | offload::TSO_ECN)
                .is_ok()
        {
            ok |= offload::TSO_ECN;
        }
        ok
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface's MTU (SIOCGIFMTU), what solo5-hvt gives an hvt
    /// guest when no MTU is asked for.
    pub fn mtu(&self) -> Result<u16, TapError> {
        // SAFETY: socket() has no memory preconditions; the fd is owned
        // by the File right away, which closes it.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return self.check(fd, "socket").map(|()| 0);
        }
        // SAFETY: `fd` is a fresh socket nobody else owns.
        let sock = unsafe { <File as std::os::unix::io::FromRawFd>::from_raw_fd(fd) };
        // struct ifreq: the name, then the union whose int ifr_mtu comes
        // first.
        let mut req = [0u8; 40];
        req[..self.name.len()].copy_from_slice(self.name.as_bytes());
        // SAFETY: SIOCGIFMTU reads the name and writes an int at offset 16
        // of the 40-byte ifreq, which lives across the call.
        let ret = unsafe {
            vmm_sys_util::ioctl::ioctl_with_mut_ref(&sock, libc::SIOCGIFMTU as _, &mut req)
        };
        self.check(ret, "SIOCGIFMTU")?;
        let mtu = i32::from_ne_bytes([req[16], req[17], req[18], req[19]]);
        Ok(mtu.clamp(0, i32::from(u16::MAX)) as u16)
    }

    /// TUNSETOFFLOAD flags this TAP accepts.
    pub fn supported_offloads(&self) -> u32 {
        self.offloads
    }

    /// Tells the TAP which offloads the reader (the guest) can take.
    pub fn set_offload(&self, flags: u32) -> Result<(), TapError> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        let ret = unsafe { ioctl_with_val(&self.file, TUNSETOFFLOAD(), flags.into()) };
        self.check(ret, "TUNSETOFFLOAD")
    }

    /// Sets the length of the virtio-net header in front of each frame
    /// (10 for legacy drivers, 12 for VERSION_1 or MRG_RXBUF).
    pub fn set_vnet_hdr_size(&self, size: usize) -> Result<(), TapError> {
        let size = size as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer, which
        // is valid for the call.
        let ret = unsafe { ioctl_with_ref(&self.file, TUNSETVNETHDRSZ(), &size) };
        self.check(ret, "TUNSETVNETHDRSZ")
    }

    /// The header length the TAP uses now.
    pub fn vnet_hdr_size(&self) -> Result<usize, TapError> {
        let mut size: libc::c_int = 0;
        // SAFETY: TUNGETVNETHDRSZ writes one int through the pointer, which
        // is valid and writable for the call.
        let ret = unsafe {
            vmm_sys_util::ioctl::ioctl_with_mut_ref(&self.file, TUNGETVNETHDRSZ(), &mut size)
        };
        self.check(ret, "TUNGETVNETHDRSZ")?;
        Ok(size as usize)
    }

    fn check(&self, ret: libc::c_int, what: &'static str) -> Result<(), TapError> {
        if ret < 0 {
            return Err(TapError::Ioctl {
                name: self.name.clone(),
                what,
                err: io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl crate::backend::Backend for Tap {
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::Read;
        (&self.file).read(buf)
    }

    fn read_frame_iov(&mut self, iov: &[libc::iovec]) -> io::Result<usize> {
        let count = iov.len().min(libc::c_int::MAX as usize) as libc::c_int;
        // SAFETY: every iovec points into guest memory the caller checked
        // as writable (or into the caller's own buffer) and keeps mapped
        // for the call; readv writes only within them (the TAP cuts a
        // longer frame short and returns the bytes it copied).
        let ret = unsafe { libc::readv(self.file.as_raw_fd(), iov.as_ptr(), count) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ret as usize)
    }

    fn write_frame(&mut self, iov: &[libc::iovec]) -> io::Result<usize> {
        let count = iov.len().min(libc::c_int::MAX as usize) as libc::c_int;
        // SAFETY: every iovec points into guest memory the caller checked
        // and keeps mapped for the call; writev only reads through them.
        let ret = unsafe { libc::writev(self.file.as_raw_fd(), iov.as_ptr(), count) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ret as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_syscall() {
        for bad in ["", "a/b", "has space", "x:1", "sixteen-chars-xx", "..", "."] {
            assert!(
                matches!(Tap::open(bad), Err(TapError::BadName(_))),
                "{bad:?}"
            );
        }
        check_name("tap0").unwrap();
        check_name("fifteen-chars-x").unwrap();
    }

    #[test]
    fn missing_interface_names_the_fix() {
        let err = Tap::open("ukvm-nonexist0").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("ip tuntap add ukvm-nonexist0 mode tap"),
            "{msg}"
        );
    }

    #[test]
    fn regular_interface_is_not_a_tap() {
        // `lo` exists in every namespace and is not a TAP.
        match Tap::open("lo") {
            Err(TapError::NotTap(_)) | Err(TapError::PermissionDenied(_)) => {}
            other => panic!("unexpected: {other:?}"),
        }
    }

    #[test]
    fn ifreq_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }
}
