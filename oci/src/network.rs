//! The guest's network: inside the container's network namespace, take the
//! interface the engine (or CNI) set up, make a TAP named from the
//! container id, and redirect every frame both ways with tc (an ingress
//! qdisc and a mirred redirect on each side, as urunc and Kata do). The
//! guest's NIC gets the interface's MAC, so the unikernel answers on the
//! container's address and published ports work unchanged.
//!
//! iproute2's `ip` and `tc` do the work (a netlink crate would add an
//! async runtime for six messages); their errors are passed on verbatim.

use crate::error::{Error, Result};
use crate::unikernel::NetValues;
use serde::Deserialize;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// The TAP name for container `id`: "uk" and the id's first 12 letters
/// and digits (IFNAMSIZ allows 15). Container ids are random or chosen
/// unique by the engine; the name only has to be unique in the container's
/// own namespace.
pub fn tap_name(id: &str) -> String {
    let tail: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("uk{tail}")
}

/// Runs `program args` (in the network namespace `netns` when given) and
/// returns its stdout, or its stderr as the error.
fn run(netns: Option<&File>, program: &str, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(ns) = netns {
        let fd = ns.as_raw_fd();
        // SAFETY: setns is async-signal-safe and only changes the child's
        // network namespace; `fd` stays open in the parent until spawn
        // returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd
        .output()
        .map_err(|e| Error::Network(format!("cannot run {program} (install iproute2): {e}")))?;
    if !out.status.success() {
        return Err(Error::Network(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[derive(Deserialize)]
struct Link {
    ifname: String,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    link_type: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    addr_info: Vec<Addr>,
}

#[derive(Deserialize)]
struct Addr {
    family: String,
    local: String,
    prefixlen: u8,
}

#[derive(Deserialize)]
struct Route {
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    dev: Option<String>,
}

/// The container's interface, as found in the current namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name (eth0, ...).
    pub name: String,
    /// Its MTU.
    pub mtu: u32,
    /// Address, prefix, gateway, MAC (DNS is filled by the caller).
    pub values: NetValues,
}

/// Finds the container's interface in the current network namespace: the
/// default route's device, else the only interface besides loopback.
pub fn discover(tap: &str) -> Result<Interface> {
    let links: Vec<Link> = parse(&run(None, "ip", &["-j", "addr", "show"])?, "ip -j addr")?;
    let routes: Vec<Route> = parse(
        &run(None, "ip", &["-j", "-4", "route", "show", "default"])?,
        "ip -j route",
    )?;
    let candidates: Vec<&Link> = links
        .iter()
        .filter(|l| l.link_type != "loopback" && l.ifname != tap)
        .collect();
    let default = routes
        .iter()
        .find_map(|r| Some((r.dev.as_deref()?, r.gateway.clone())));
    let link = match (default.clone(), candidates.as_slice()) {
        (_, []) => {
            return Err(Error::Network(
                "no interface besides lo in the container's network namespace \
                 (the engine set up no network for it)"
                    .into(),
            ))
        }
        (Some((dev, _)), all) if all.iter().any(|l| l.ifname == dev) => {
            all.iter().find(|l| l.ifname == dev).copied()
        }
        (_, [only]) => Some(*only),
        (_, all) => all.iter().find(|l| l.ifname == "eth0").copied(),
    };
    let Some(link) = link else {
        let names: Vec<&str> = candidates.iter().map(|l| l.ifname.as_str()).collect();
        return Err(Error::Network(format!(
            "interfaces {} and no default route: cannot tell which is the container's",
            names.join(", ")
        )));
    };
    let Some(addr) = link.addr_info.iter().find(|a| a.family == "inet") else {
        return Err(Error::Network(format!(
            "interface {} has no IPv4 address (the guest needs one)",
            link.ifname
        )));
    };
    let gateway = default
        .filter(|(dev, _)| *dev == link.ifname)
        .and_then(|(_, gw)| gw)
        .unwrap_or_default();
    Ok(Interface {
        name: link.ifname.clone(),
        mtu: link.mtu,
        values: NetValues {
            ip: addr.local.clone(),
            prefix: addr.prefixlen,
            gateway,
            mac: link.address.clone(),
            dns: String::new(),
        },
    })
}

fn parse<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T> {
    serde_json::from_str(json)
        .map_err(|e| Error::Network(format!("{what}: unexpected output: {e}")))
}

/// The first `nameserver` of a resolv.conf, or "".
pub fn first_nameserver(resolv_conf: &str) -> String {
    resolv_conf
        .lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .unwrap_or_default()
        .to_string()
}

/// Creates `tap` and the redirects between it and `iface`, in the current
/// namespace. On failure, what was made is removed again.
pub fn connect(iface: &Interface, tap: &str) -> Result<()> {
    let made = (|| {
        run(None, "ip", &["tuntap", "add", "dev", tap, "mode", "tap"])?;
        let mtu = iface.mtu.max(68).to_string();
        run(None, "ip", &["link", "set", "dev", tap, "mtu", &mtu, "up"])?;
        redirect(&iface.name, tap)?;
        redirect(tap, &iface.name)
    })();
    if made.is_err() {
        disconnect(None, tap, Some(&iface.name));
    }
    made
}

/// Sends every frame arriving on `from` out of `to`.
fn redirect(from: &str, to: &str) -> Result<()> {
    run(None, "tc", &["qdisc", "add", "dev", from, "ingress"])?;
    run(
        None,
        "tc",
        &[
            "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32", "match",
            "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", to,
        ],
    )
    .map(drop)
}

/// Removes `tap` and the ingress qdisc (with its redirect) from `iface`,
/// in `netns` (a namespace file) or the current namespace. Missing pieces
/// are fine: a namespace made for the container dies with it.
pub fn disconnect(netns: Option<&File>, tap: &str, iface: Option<&str>) {
    let _ = run(netns, "ip", &["link", "del", "dev", tap]);
    if let Some(i) = iface {
        let _ = run(netns, "tc", &["qdisc", "del", "dev", i, "ingress"]);
    }
}

/// Brings `lo` up in the current (new) namespace, as `ip link set lo up`
/// would, without starting a process for it (SIOCGIFFLAGS/SIOCSIFFLAGS).
pub fn loopback_up() -> Result<()> {
    let fail = |op: &str| Error::io(format!("lo: {op}"), std::io::Error::last_os_error());
    // SAFETY: a plain datagram socket, closed by OwnedFd below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(fail("socket"));
    }
    // SAFETY: fd is a new socket nothing else owns.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(fail("SIOCGIFFLAGS"));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(fail("SIOCSIFFLAGS"));
        }
    }
    Ok(())
}

/// Opens a network namespace file, if it still exists.
pub fn open_netns(path: &Path) -> Option<File> {
    File::open(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_fit_ifnamsiz() {
        assert_eq!(tap_name("abc"), "ukabc");
        let long = tap_name("0123456789abcdef0123456789abcdef");
        assert_eq!(long, "uk0123456789ab");
        assert!(long.len() <= 15);
        assert_eq!(tap_name("my_ctr-1"), "ukmyctr1");
    }

    #[test]
    fn nameserver_is_read() {
        let conf = "# generated\nsearch lan\nnameserver 10.0.0.53\nnameserver 1.1.1.1\n";
        assert_eq!(first_nameserver(conf), "10.0.0.53");
        assert_eq!(first_nameserver("search x\n"), "");
    }
}
