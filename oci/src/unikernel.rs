//! What to boot: `/ukvm.json` in the image's rootfs, overridden key by key
//! by `org.ukvm.*` annotations, checked at `create` and turned into ukvm's
//! command line at `start` (when the network is known).

use crate::error::{Error, Result};
use crate::rootfs;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The file in the rootfs that marks a unikernel image.
pub const CONFIG_FILE: &str = "ukvm.json";
/// Prefix of the annotations that override it.
pub const ANNOTATION_PREFIX: &str = "org.ukvm.";
/// Guest memory when neither ukvm.json nor the spec's limit says.
pub const DEFAULT_MEM_MIB: u64 = 64;
/// Placeholders `cmdline` may use, filled from the container's interface.
pub const PLACEHOLDERS: [&str; 6] = ["ip", "prefix", "netmask", "gateway", "mac", "dns"];

/// The guest's network: none, one NIC, or a Solo5 hvt manifest device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Net {
    /// `true`: one virtio-net NIC; `false`: none.
    Nic(bool),
    /// The hvt manifest's net device name.
    Named(String),
}

/// `/ukvm.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unikernel {
    /// Kernel path inside the rootfs.
    pub kernel: String,
    /// Command line template (see [`PLACEHOLDERS`]).
    #[serde(default)]
    pub cmdline: String,
    /// Guest memory in MiB.
    #[serde(default)]
    pub mem_mib: Option<u64>,
    /// `--disk` specs whose paths are inside the rootfs.
    #[serde(default)]
    pub disks: Vec<String>,
    /// The guest's network.
    #[serde(default = "no_net")]
    pub net: Net,
}

fn no_net() -> Net {
    Net::Nic(false)
}

impl Unikernel {
    /// Whether the guest gets a NIC on the container's interface.
    pub fn wants_net(&self) -> bool {
        !matches!(self.net, Net::Nic(false))
    }
}

/// Whether the bundle is a unikernel: its rootfs holds `/ukvm.json` or
/// the spec carries `org.ukvm.*` annotations. Sandbox (pause) containers
/// of a Kubernetes pod inherit the pod's annotations but are never one.
pub fn is_unikernel(rootfs: &Path, annotations: &HashMap<String, String>) -> bool {
    let sandbox = [
        "io.kubernetes.cri.container-type",
        "io.kubernetes.cri-o.ContainerType",
    ]
    .iter()
    .any(|k| annotations.get(*k).is_some_and(|v| v == "sandbox"));
    if sandbox {
        return false;
    }
    std::fs::symlink_metadata(rootfs.join(CONFIG_FILE)).is_ok()
        || annotations.keys().any(|k| k.starts_with(ANNOTATION_PREFIX))
}

/// Reads `/ukvm.json`, applies the annotations and checks the result
/// against the rootfs. `spec_mem` is the spec's memory limit in bytes.
pub fn load(
    rootfs: &Path,
    annotations: &HashMap<String, String>,
    spec_mem: Option<i64>,
) -> Result<Unikernel> {
    let mut value = read_file(rootfs)?;
    for (key, v) in annotations {
        if let Some(field) = key.strip_prefix(ANNOTATION_PREFIX) {
            value.insert(field.to_string(), annotation_value(key, field, v)?);
        }
    }
    if !value.contains_key("kernel") {
        return Err(Error::Unikernel(format!(
            "no kernel: the rootfs has no /{CONFIG_FILE} and no {ANNOTATION_PREFIX}kernel annotation"
        )));
    }
    let mut uk: Unikernel = serde_json::from_value(serde_json::Value::Object(value))
        .map_err(|e| Error::Unikernel(format!("/{CONFIG_FILE}: {e}")))?;
    if uk.mem_mib.is_none() {
        let from_spec = spec_mem.filter(|b| *b > 0).map(|b| b as u64 >> 20);
        uk.mem_mib = Some(from_spec.unwrap_or(DEFAULT_MEM_MIB));
    }
    check_cmdline(&uk)?;
    resolve_paths(rootfs, &uk)?;
    Ok(uk)
}

/// The JSON object in `/ukvm.json`, or an empty one when it is absent.
fn read_file(rootfs: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    let path = rootfs.join(CONFIG_FILE);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(serde_json::Map::new());
    }
    // A symlinked ukvm.json is resolved inside the rootfs like any path.
    let host = rootfs::resolve_file(rootfs, CONFIG_FILE)
        .map_err(|e| Error::Unikernel(format!("/{CONFIG_FILE}: {e}")))?;
    let text = std::fs::read_to_string(&host)
        .map_err(|e| Error::Unikernel(format!("/{CONFIG_FILE}: {e}")))?;
    match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::Unikernel(format!(
            "/{CONFIG_FILE}: expected a JSON object"
        ))),
        Err(e) => Err(Error::Unikernel(format!(
            "/{CONFIG_FILE}: invalid JSON: {e}"
        ))),
    }
}

/// An annotation's string as the JSON value of its field.
fn annotation_value(key: &str, field: &str, v: &str) -> Result<serde_json::Value> {
    let bad = |why: String| Error::Unikernel(format!("annotation {key}={v:?}: {why}"));
    Ok(match field {
        "kernel" | "cmdline" => serde_json::Value::String(v.to_string()),
        "mem_mib" => serde_json::Value::from(
            v.parse::<u64>()
                .map_err(|e| bad(format!("not a number of MiB ({e})")))?,
        ),
        "disks" => serde_json::from_str::<Vec<String>>(v)
            .map(serde_json::Value::from)
            .map_err(|e| bad(format!("expected a JSON array of strings ({e})")))?,
        "net" => match v {
            "true" => serde_json::Value::Bool(true),
            "false" => serde_json::Value::Bool(false),
            name => serde_json::Value::String(name.to_string()),
        },
        _ => {
            return Err(bad(
                "unknown key (expected kernel, cmdline, mem_mib, disks or net)".into(),
            ))
        }
    })
}

/// Refuses unknown placeholders, and placeholders without a network.
fn check_cmdline(uk: &Unikernel) -> Result<()> {
    let mut rest = uk.cmdline.as_str();
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(Error::Unikernel("cmdline: unclosed '{{'".into()));
        };
        let name = &after[..end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(Error::Unikernel(format!(
                "cmdline: unknown placeholder {{{{{name}}}}} (known: {})",
                PLACEHOLDERS.join(", ")
            )));
        }
        if !uk.wants_net() {
            return Err(Error::Unikernel(format!(
                "cmdline uses {{{{{name}}}}} but \"net\" is not enabled"
            )));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

/// The host paths of the kernel and the `--disk` specs; refuses paths
/// that leave the rootfs or do not exist.
pub fn resolve_paths(rootfs: &Path, uk: &Unikernel) -> Result<(PathBuf, Vec<String>)> {
    let kernel = rootfs::resolve_file(rootfs, &uk.kernel).map_err(|reason| Error::Path {
        what: "kernel",
        path: uk.kernel.clone(),
        reason,
    })?;
    let disks = uk
        .disks
        .iter()
        .map(|d| resolve_disk(rootfs, d))
        .collect::<Result<_>>()?;
    Ok((kernel, disks))
}

/// `[NAME=]PATH[,ro|rw]` with PATH in the rootfs -> the same on the host.
fn resolve_disk(rootfs: &Path, spec: &str) -> Result<String> {
    let bad = |reason: String| Error::Path {
        what: "disk",
        path: spec.to_string(),
        reason,
    };
    let (name, rest) = match spec.split_once('=') {
        Some((n, r)) if !n.contains('/') => (Some(n), r),
        _ => (None, spec),
    };
    let (path, option) = match rest.rsplit_once(',') {
        Some((p, o)) if o == "ro" || o == "rw" => (p, Some(o)),
        Some((_, o)) => return Err(bad(format!("unknown option '{o}' (expected ro or rw)"))),
        None => (rest, None),
    };
    let host = rootfs::resolve_file(rootfs, path).map_err(bad)?;
    let host = host.to_string_lossy();
    if host.contains(',') || host.contains('=') {
        return Err(bad("the host path contains ',' or '='".into()));
    }
    let mut out = String::new();
    if let Some(n) = name {
        out.push_str(n);
        out.push('=');
    }
    out.push_str(&host);
    if let Some(o) = option {
        out.push(',');
        out.push_str(o);
    }
    Ok(out)
}

/// The guest's view of the container's interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetValues {
    /// IPv4 address.
    pub ip: String,
    /// Prefix length.
    pub prefix: u8,
    /// Default gateway ("" when none).
    pub gateway: String,
    /// MAC address of the container's interface.
    pub mac: String,
    /// First nameserver ("" when none).
    pub dns: String,
}

impl NetValues {
    /// The dotted netmask of the prefix.
    pub fn netmask(&self) -> String {
        let bits = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix.min(32)))
        };
        std::net::Ipv4Addr::from(bits).to_string()
    }
}

/// The command line with its placeholders filled.
pub fn fill_cmdline(template: &str, net: &NetValues) -> String {
    template
        .replace("{{ip}}", &net.ip)
        .replace("{{prefix}}", &net.prefix.to_string())
        .replace("{{netmask}}", &net.netmask())
        .replace("{{gateway}}", &net.gateway)
        .replace("{{mac}}", &net.mac)
        .replace("{{dns}}", &net.dns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_fill_and_netmask() {
        let net = NetValues {
            ip: "10.1.2.3".into(),
            prefix: 20,
            gateway: "10.1.0.1".into(),
            mac: "02:00:00:00:00:01".into(),
            dns: "10.1.0.53".into(),
        };
        assert_eq!(net.netmask(), "255.255.240.0");
        assert_eq!(
            fill_cmdline(
                "ip={{ip}}/{{prefix}} m={{netmask}} gw={{gateway}} {{mac}} {{dns}}",
                &net
            ),
            "ip=10.1.2.3/20 m=255.255.240.0 gw=10.1.0.1 02:00:00:00:00:01 10.1.0.53"
        );
    }

    #[test]
    fn cmdline_checks() {
        let mut uk: Unikernel = serde_json::from_str(r#"{"kernel": "/k", "net": true}"#).unwrap();
        uk.cmdline = "ip={{ip}}".into();
        check_cmdline(&uk).unwrap();
        uk.cmdline = "x={{ipv6}}".into();
        assert!(check_cmdline(&uk)
            .unwrap_err()
            .to_string()
            .contains("unknown placeholder {{ipv6}}"));
        uk.cmdline = "x={{ip".into();
        assert!(check_cmdline(&uk).is_err());
        uk.cmdline = "ip={{ip}}".into();
        uk.net = Net::Nic(false);
        assert!(check_cmdline(&uk)
            .unwrap_err()
            .to_string()
            .contains("not enabled"));
    }

    #[test]
    fn annotations_override_and_are_checked() {
        let v = annotation_value("org.ukvm.disks", "disks", r#"["/a.iso","/b.img,rw"]"#).unwrap();
        assert_eq!(v, serde_json::json!(["/a.iso", "/b.img,rw"]));
        assert!(annotation_value("org.ukvm.disks", "disks", "/a.iso").is_err());
        assert!(annotation_value("org.ukvm.mem_mib", "mem_mib", "lots").is_err());
        assert_eq!(
            annotation_value("k", "net", "service").unwrap(),
            serde_json::json!("service")
        );
        assert!(annotation_value("org.ukvm.kernal", "kernal", "/k").is_err());
    }
}
