//! The commands after `create`: start, state, kill, delete, ps, features.

use crate::create::{destroy, wait_gone};
use crate::error::{Error, Result};
use crate::hooks::{self, Kind};
use crate::init;
use crate::log::Log;
use crate::state::{container_dir, Record, OCI_VERSION};
use oci_spec::runtime::{ContainerState, FeaturesBuilder};
use std::path::Path;

/// `start ID`: releases the init process; it becomes ukvm.
pub fn start(root: &Path, id: &str, log: &Log) -> Result<()> {
    let mut record = Record::load(root, id)?;
    let status = record.status();
    if status != ContainerState::Created {
        return Err(Error::BadState {
            id: id.into(),
            status: status.to_string(),
            wanted: "only a created container can be started",
        });
    }
    let dir = container_dir(root, id)?;
    record.iface = init::release(&dir)?;
    record.started = true;
    record.save(root)?;
    let state = state_json(&record, ContainerState::Running)?;
    // The spec: a failing poststart hook is logged; the container runs on.
    if let Err(e) = hooks::run(Kind::Poststart, record.hooks.as_ref(), &state) {
        log.warn(&e.to_string());
    }
    Ok(())
}

fn state_json(record: &Record, status: ContainerState) -> Result<String> {
    serde_json::to_string_pretty(&record.oci_state(status)?).map_err(|e| Error::Init(e.to_string()))
}

/// `state ID`: the runtime spec's state JSON, on stdout.
pub fn state(root: &Path, id: &str) -> Result<()> {
    let record = Record::load(root, id)?;
    println!("{}", state_json(&record, record.status())?);
    Ok(())
}

/// A signal by name ("TERM", "SIGKILL") or number.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let name = s.trim_start_matches("SIG");
    let known = [
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("USR2", libc::SIGUSR2),
        ("TERM", libc::SIGTERM),
        ("CONT", libc::SIGCONT),
        ("STOP", libc::SIGSTOP),
        ("WINCH", libc::SIGWINCH),
    ];
    known
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| Error::Usage(format!("unknown signal {s:?}")))
}

/// `kill ID SIGNAL`: signals the VM process (or the waiting init).
/// `--all` is the same: the container has one process.
pub fn kill(root: &Path, id: &str, signal: &str) -> Result<()> {
    let sig = parse_signal(signal)?;
    let record = Record::load(root, id)?;
    let status = record.status();
    if !matches!(status, ContainerState::Created | ContainerState::Running) {
        // containerd's shim matches "container not running".
        return Err(Error::BadState {
            id: id.into(),
            status: status.to_string(),
            wanted: "container not running",
        });
    }
    // SAFETY: signals the container's process, whose start time was just
    // checked by status().
    if unsafe { libc::kill(record.pid, sig) } != 0 {
        return Err(Error::io(
            format!("kill {}", record.pid),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// `delete [--force] ID`: removes a stopped (or, forced, any) container:
/// its TAP and redirects, cgroups and state; runs the poststop hooks.
pub fn delete(root: &Path, id: &str, force: bool, log: &Log) -> Result<()> {
    let record = match Record::load(root, id) {
        Ok(r) => r,
        // Engines delete twice on some error paths; `--force` is quiet.
        Err(Error::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let status = record.status();
    if status == ContainerState::Running && !force {
        return Err(Error::BadState {
            id: id.into(),
            status: status.to_string(),
            wanted: "cannot delete a container that is not stopped (use --force)",
        });
    }
    let dir = container_dir(root, id)?;
    if record.pid > 0 {
        // SAFETY: signals the container's process after checking it is
        // still the same process (start time).
        if crate::state::process_start(record.pid) == Some(record.pid_start) {
            unsafe { libc::kill(record.pid, libc::SIGKILL) };
            wait_gone(record.pid, record.pid_start);
        }
    }
    let state = state_json(&record, ContainerState::Stopped)?;
    destroy(&record, &dir);
    if let Err(e) = hooks::run(Kind::Poststop, record.hooks.as_ref(), &state) {
        log.warn(&e.to_string());
    }
    Ok(())
}

/// `ps [--format json] ID`: the container's one process.
pub fn ps(root: &Path, id: &str, format: &str) -> Result<()> {
    let record = Record::load(root, id)?;
    let running = matches!(
        record.status(),
        ContainerState::Created | ContainerState::Running
    );
    let pids: Vec<i32> = if running {
        vec![record.pid]
    } else {
        Vec::new()
    };
    match format {
        "json" => println!("{}", serde_json::json!(pids)),
        "table" => {
            println!("PID   CMD");
            for p in pids {
                let cmd = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
                println!("{p:<5} {}", cmd.trim());
            }
        }
        other => {
            return Err(Error::Usage(format!(
                "ps --format {other}: expected table or json"
            )))
        }
    }
    Ok(())
}

/// `features`: what this runtime implements, as the spec's features JSON.
pub fn features() -> Result<()> {
    let annotations = [(
        "org.ukvm.oci.version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    )];
    let features = FeaturesBuilder::default()
        .oci_version_min("1.0.0")
        .oci_version_max(OCI_VERSION)
        .hooks(Kind::ALL.map(|k| k.name().to_string()).to_vec())
        .mount_options(Vec::<String>::new())
        .annotations(
            annotations
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()
        .map_err(|e| Error::Init(format!("features: {e}")))?;
    let json = serde_json::to_string_pretty(&features).map_err(|e| Error::Init(e.to_string()))?;
    println!("{json}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("15").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("KILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("SIGTERM").unwrap(), libc::SIGTERM);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
