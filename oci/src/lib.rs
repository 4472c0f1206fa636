//! `ukvm-oci`: a runc-compatible OCI runtime whose containers are
//! unikernels running under ukvm, so Docker, Podman, containerd and
//! Kubernetes (through a RuntimeClass) build, ship, start, stop, log and
//! network them like containers.
//!
//! A bundle is a unikernel when its rootfs holds `/ukvm.json` or its spec
//! carries `org.ukvm.*` annotations ([`unikernel`]); every other bundle
//! (the pod's pause container, ordinary containers) is handed to runc
//! unchanged ([`delegate`]).
//!
//! The lifecycle ([`create`], [`commands`]): `create` records the
//! container under `--root` ([`state`]) and starts an init process
//! ([`init`]) in the spec's network namespace and cgroup ([`cgroups`]),
//! then runs the create-time [`hooks`]. `start` releases it: it wires a
//! TAP to the container's interface ([`network`]) and executes `ukvm` in
//! its own place, so the container's process is the VM, its stdout the
//! serial console (or a terminal, [`console`]) and its exit status the
//! guest's. Errors go to the `--log` file in runc's format ([`log`]).

pub mod cgroups;
pub mod commands;
pub mod console;
pub mod create;
pub mod delegate;
pub mod error;
pub mod hooks;
pub mod init;
pub mod log;
pub mod network;
pub mod rootfs;
pub mod state;
pub mod unikernel;

pub use error::{Error, Result};
