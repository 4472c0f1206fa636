//! The fds a VM's threads use once the guest runs, gathered for their
//! seccomp filters (`ukvm_sandbox::Fds`): what every VM has, what its
//! machine's devices reported, and `--dumpcore`'s directory.

use crate::config::VmConfig;
use crate::kick::Kicker;
use kvm_ioctls::{VcpuFd, VmFd};
use std::os::fd::{AsRawFd, RawFd};
use ukvm_debug::core_file::CoreDir;
use ukvm_sandbox::Fds;

/// Where the vCPU thread's output goes: the caller's
/// [`VmConfig::sandbox_output`], and stdout for the default serial
/// console (stderr is always allowed).
pub(crate) fn output(cfg: &VmConfig) -> Vec<RawFd> {
    let mut output = cfg.sandbox_output.clone();
    if cfg.serial_is_stdout {
        output.push(libc::STDOUT_FILENO);
    }
    output
}

/// The VM's fds: its KVM fds, the kick's eventfd, `output`, the devices'
/// and the core directory's (only the vCPU thread's filter has calls on
/// those).
pub(crate) fn gather(
    (vcpu, vm, kicker): (&VcpuFd, &VmFd, &Kicker),
    output: Vec<RawFd>,
    devices: &Fds,
    core_dir: Option<&CoreDir>,
) -> Fds {
    let mut fds = Fds {
        vcpu: Some(vcpu.as_raw_fd()),
        vm: Some(vm.as_raw_fd()),
        output,
        events: vec![kicker.wake_fd().as_raw_fd()],
        core_dir: core_dir.map(CoreDir::dir_fd).into_iter().collect(),
        core: core_dir.map(CoreDir::slot_fd).into_iter().collect(),
        ..Fds::default()
    };
    fds.extend(devices);
    fds
}

/// The I/O thread's fds, all made before the vCPU (see
/// `IoThread::start_for`): the VM fd (`KVM_IRQ_LINE`), the kick's
/// eventfd, the devices' (TAPs, disk images, queue eventfds) and `own`,
/// its stop eventfds. It writes no output but stderr (always allowed)
/// and has no vCPU fd.
pub(crate) fn io_thread(vm: &VmFd, kicker: &Kicker, devices: &Fds, own: [RawFd; 2]) -> Fds {
    let mut fds = Fds {
        vm: Some(vm.as_raw_fd()),
        events: vec![kicker.wake_fd().as_raw_fd()],
        ..Fds::default()
    };
    fds.events.extend(own);
    fds.extend(devices);
    fds
}
