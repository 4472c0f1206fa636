//! Puts the container's process in the cgroup the engine named
//! (`linux.cgroupsPath`), in every mounted hierarchy (cgroup v1 and v2),
//! so the engine's accounting and `docker stats`-style views see the VM.
//! Resource limits are not written: the VM's memory is sized from the
//! limit instead (a cgroup limit equal to guest memory would OOM-kill the
//! monitor).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The cgroup path relative to each hierarchy. With `--systemd-cgroup`,
/// runc's "slice:prefix:name" form becomes "slice/prefix-name.scope"
/// (the layout systemd would give it).
pub fn relative_path(spec_path: &str, systemd: bool) -> String {
    let parts: Vec<&str> = spec_path.split(':').collect();
    match parts.as_slice() {
        [slice, prefix, name] if systemd => {
            let slice = if slice.is_empty() {
                "system.slice"
            } else {
                slice
            };
            format!("{slice}/{prefix}-{name}.scope")
        }
        _ => spec_path.trim_start_matches('/').to_string(),
    }
}

/// Mount points of the cgroup hierarchies, from /proc/self/mountinfo.
fn hierarchies() -> Vec<(PathBuf, bool)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mount = left.split_whitespace().nth(4)?;
            let cpuset = right.contains("cpuset");
            matches!(fstype, "cgroup" | "cgroup2").then(|| (PathBuf::from(mount), cpuset))
        })
        .collect()
}

/// Moves `pid` into `relative` in every hierarchy; returns the
/// directories it created (for [`remove`]).
pub fn place(pid: i32, relative: &str) -> Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    for (mount, cpuset) in hierarchies() {
        let dir = mount.join(relative);
        let result = make_dirs(&mount, &dir, cpuset, &mut created).and_then(|()| {
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string())
                .map_err(|e| Error::io(format!("cgroup: write {}", procs.display()), e))
        });
        if let Err(e) = result {
            remove(&created);
            return Err(e);
        }
    }
    Ok(created)
}

/// Creates `dir` and its missing parents below `mount`; a new cpuset
/// cgroup (v1) starts with no CPUs or memory nodes, so it inherits its
/// parent's.
fn make_dirs(mount: &Path, dir: &Path, cpuset: bool, created: &mut Vec<PathBuf>) -> Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() && d.starts_with(mount) {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    for m in missing.into_iter().rev() {
        std::fs::create_dir(&m)
            .map_err(|e| Error::io(format!("cgroup: mkdir {}", m.display()), e))?;
        created.push(m.clone());
        if cpuset {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Some(parent) = m.parent() {
                    if let Ok(v) = std::fs::read_to_string(parent.join(f)) {
                        let _ = std::fs::write(m.join(f), v.trim());
                    }
                }
            }
        }
    }
    Ok(())
}

/// Removes the directories [`place`] created, deepest first.
pub fn remove(created: &[PathBuf]) {
    for d in created.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_and_cgroupfs_paths() {
        assert_eq!(relative_path("/docker/abc", false), "docker/abc");
        assert_eq!(
            relative_path("system.slice:docker:abc", true),
            "system.slice/docker-abc.scope"
        );
        assert_eq!(
            relative_path(":cri:abc", true),
            "system.slice/cri-abc.scope"
        );
    }
}
