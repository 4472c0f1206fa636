//! A container's record under `--root`: `<root>/<id>/ukvm-oci.json`, written
//! atomically, and its status derived from the process it names. The same
//! root may hold runc's containers (delegated ones); the record file tells
//! ours apart.

use crate::error::{Error, Result};
use crate::unikernel::Unikernel;
use oci_spec::runtime::{ContainerState, Hooks, State, StateBuilder};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Name of the record file in the container's directory.
pub const RECORD_FILE: &str = "ukvm-oci.json";
/// The OCI runtime spec version this runtime implements.
pub const OCI_VERSION: &str = "1.0.2";
/// Default `--root` (runc's is /run/runc).
pub const DEFAULT_ROOT: &str = "/run/ukvm-oci";

/// The network namespace the container's process lives in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetNs {
    /// The spec names no network namespace: the host's.
    Host,
    /// A new one, made by the init process (it dies with the container).
    New,
    /// An existing one (Podman, CNI, Kubernetes).
    Path(PathBuf),
}

/// Everything later commands need to know about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// The rootfs (absolute).
    pub rootfs: PathBuf,
    /// The spec's annotations.
    pub annotations: HashMap<String, String>,
    /// What to boot.
    pub unikernel: Unikernel,
    /// The ukvm binary the init process executes.
    pub ukvm: PathBuf,
    /// Where the process's network is.
    pub netns: NetNs,
    /// The TAP made for the guest (named from the id).
    pub tap: String,
    /// The container's interface the TAP is wired to (known after start).
    pub iface: Option<String>,
    /// The resolv.conf the engine mounts over /etc/resolv.conf.
    pub resolv_conf: Option<PathBuf>,
    /// The spec's hooks.
    pub hooks: Option<Hooks>,
    /// Whether stdio is a terminal from `--console-socket`.
    pub terminal: bool,
    /// Cgroup directories this runtime created (removed by `delete`).
    pub cgroups: Vec<PathBuf>,
    /// The container process (init, then ukvm); 0 while creating.
    pub pid: i32,
    /// Its start time (/proc/PID/stat field 22), so a recycled pid is
    /// not mistaken for it.
    pub pid_start: u64,
    /// Whether `start` ran.
    pub started: bool,
}

/// The directory of container `id` under `root`.
pub fn container_dir(root: &Path, id: &str) -> Result<PathBuf> {
    let valid = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c));
    if !valid {
        return Err(Error::Usage(format!(
            "invalid container id {id:?} (letters, digits, '-', '_', '.', '+')"
        )));
    }
    Ok(root.join(id))
}

/// Whether container `id` under `root` is one of ours.
pub fn is_ours(root: &Path, id: &str) -> bool {
    container_dir(root, id).is_ok_and(|d| d.join(RECORD_FILE).exists())
}

impl Record {
    /// Reads the record of container `id`.
    pub fn load(root: &Path, id: &str) -> Result<Record> {
        let path = container_dir(root, id)?.join(RECORD_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        };
        serde_json::from_str(&text)
            .map_err(|e| Error::Init(format!("{}: corrupt record: {e}", path.display())))
    }

    /// Writes the record (write to a temporary file, then rename, so a
    /// concurrent `state` never reads half of it).
    pub fn save(&self, root: &Path) -> Result<()> {
        let dir = container_dir(root, &self.id)?;
        let tmp = dir.join(format!("{RECORD_FILE}.tmp"));
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Init(format!("serialise record: {e}")))?;
        std::fs::write(&tmp, json).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        std::fs::rename(&tmp, dir.join(RECORD_FILE))
            .map_err(|e| Error::io(format!("rename {}", tmp.display()), e))
    }

    /// The container's status, from its process.
    pub fn status(&self) -> ContainerState {
        if self.pid <= 0 {
            return ContainerState::Creating;
        }
        match process_start(self.pid) {
            Some(start) if start == self.pid_start && self.started => ContainerState::Running,
            Some(start) if start == self.pid_start => ContainerState::Created,
            _ => ContainerState::Stopped,
        }
    }

    /// The runtime spec's state object.
    pub fn oci_state(&self, status: ContainerState) -> Result<State> {
        let pid = match status {
            ContainerState::Created | ContainerState::Running | ContainerState::Creating => {
                self.pid
            }
            ContainerState::Stopped => 0,
        };
        StateBuilder::default()
            .version(OCI_VERSION)
            .id(self.id.clone())
            .status(status)
            .pid(pid)
            .bundle(self.bundle.clone())
            .annotations(self.annotations.clone())
            .build()
            .map_err(|e| Error::Init(format!("state: {e}")))
    }
}

/// Start time of a live (not zombie) process, in clock ticks since boot.
pub fn process_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    // Field 22 overall is the 20th after "pid (comm)".
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        let root = Path::new("/r");
        assert_eq!(
            container_dir(root, "abc-1_2.x").unwrap(),
            root.join("abc-1_2.x")
        );
        for bad in ["", "..", ".", "a/b", "a b", "x\n"] {
            assert!(container_dir(root, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn own_process_start_is_read() {
        let me = std::process::id() as i32;
        assert!(process_start(me).is_some_and(|t| t > 0));
        assert_eq!(process_start(i32::MAX), None);
    }
}
