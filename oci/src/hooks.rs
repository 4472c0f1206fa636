//! OCI hooks: each runs with the container's state JSON on stdin, in the
//! spec's order, within its timeout. Docker's networking is one of them
//! (`libnetwork-setkey`, a prestart hook that moves the veth in).

use crate::error::{Error, Result};
use oci_spec::runtime::{Hook, Hooks};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The points of the lifecycle where hooks run, in spec order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Deprecated, run just before createRuntime (Docker still uses it).
    Prestart,
    /// After the namespaces exist, in the runtime's namespace.
    CreateRuntime,
    /// After createRuntime.
    CreateContainer,
    /// In the container's namespace, before the guest boots.
    StartContainer,
    /// After `start` succeeded.
    Poststart,
    /// At `delete`.
    Poststop,
}

impl Kind {
    /// Every kind, in lifecycle order.
    pub const ALL: [Kind; 6] = [
        Kind::Prestart,
        Kind::CreateRuntime,
        Kind::CreateContainer,
        Kind::StartContainer,
        Kind::Poststart,
        Kind::Poststop,
    ];

    /// The spec's name for the kind.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    #[allow(deprecated)] // prestart is deprecated but engines use it
    fn select(self, hooks: &Hooks) -> Option<&Vec<Hook>> {
        match self {
            Kind::Prestart => hooks.prestart().as_ref(),
            Kind::CreateRuntime => hooks.create_runtime().as_ref(),
            Kind::CreateContainer => hooks.create_container().as_ref(),
            Kind::StartContainer => hooks.start_container().as_ref(),
            Kind::Poststart => hooks.poststart().as_ref(),
            Kind::Poststop => hooks.poststop().as_ref(),
        }
    }
}

/// Longest a hook without a timeout may run: a hung hook must not hang
/// the engine forever.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the hooks of `kind` in order; the first failure stops them.
pub fn run(kind: Kind, hooks: Option<&Hooks>, state_json: &str) -> Result<()> {
    let Some(list) = hooks.and_then(|h| kind.select(h)) else {
        return Ok(());
    };
    for hook in list {
        run_one(hook, state_json).map_err(|reason| Error::Hook {
            kind: kind.name(),
            path: hook.path().display().to_string(),
            reason,
        })?;
    }
    Ok(())
}

fn run_one(hook: &Hook, state_json: &str) -> std::result::Result<(), String> {
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((arg0, rest)) = args.split_first() {
            cmd.arg0(arg0).args(rest);
        }
    }
    if let Some(env) = hook.env() {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine (EPIPE ignored).
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let output = collect(child.stdout.take(), child.stderr.take());
    let limit = hook
        .timeout()
        .filter(|t| *t > 0)
        .map_or(DEFAULT_TIMEOUT, |t| Duration::from_secs(t as u64));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {} s", limit.as_secs()));
            }
            Err(e) => return Err(format!("wait: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let text = output.join().unwrap_or_default();
    let text = text.trim();
    Err(if text.is_empty() {
        format!("failed ({status})")
    } else {
        format!("failed ({status}): {}", text.replace('\n', " | "))
    })
}

/// Reads a hook's stdout and stderr to the end, on a thread (a chatty
/// hook must not block on a full pipe while we wait for it).
fn collect(
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut o) = stdout {
            let _ = o.read_to_string(&mut text);
        }
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut text);
        }
        text
    })
}
