//! `--gdb`: the VM's side of a debug session (the `ukvm-debug` crate does
//! the protocol). The listener is bound when the VM is built, so a bad
//! address fails early; gdb is awaited when the run starts, before the
//! guest's first instruction; then the debugger drives the vCPU loop
//! through [`Vm::step`], and the run ends as it would without gdb.

use crate::config::VmConfig;
use crate::error::{CrashKind, Error, Result};
use crate::kick::Armed;
use crate::vm::{Exit, Step, Vm};
use kvm_ioctls::VcpuFd;
use std::sync::Arc;
use ukvm_boot::Format;
use ukvm_debug::{Ending, Layout, Listener, Stepped};
use vm_memory::GuestMemoryMmap;

/// What `Vm::step` hands the debugger.
pub(crate) enum DebugExit {
    /// `KVM_EXIT_DEBUG`.
    Trap(kvm_bindings::kvm_debug_exit_arch),
    /// An int3 KVM could not emulate, not yet completed.
    Int3,
}

/// A bound `--gdb` socket and the register layout gdb will get.
pub(crate) struct Pending {
    listener: Listener,
    layout: Layout,
}

/// The register layout (and core class) a kernel's debug tools expect:
/// 64-bit for hvt and Linux-style guests and for 64-bit ELF Multiboot
/// kernels (which switch to long mode themselves), i386 for 32-bit
/// Multiboot and PVH kernels.
pub(crate) fn layout_for(format: Format, image: &[u8]) -> Layout {
    let elf64 = image.get(..5) == Some(b"\x7fELF\x02");
    match format {
        Format::MultibootKludge | Format::MultibootElf | Format::Pvh if !elf64 => Layout::I386,
        _ => Layout::X86_64,
    }
}

impl Pending {
    /// Binds `--gdb`'s address, if given.
    pub(crate) fn bind(cfg: &VmConfig, layout: Layout) -> Result<Option<Pending>> {
        let Some(addr) = &cfg.gdb else {
            return Ok(None);
        };
        let listener = Listener::bind(addr).map_err(|e| Error::Config(e.to_string()))?;
        Ok(Some(Pending { listener, layout }))
    }
}

/// Whether the emulation failure KVM just reported is an int3.
pub(crate) fn at_int3(vcpu: &mut VcpuFd) -> bool {
    crate::emulation::emulation_failure(vcpu).is_some_and(|b| b.first() == Some(&0xCC))
}

/// The VM while gdb drives it.
struct Debugged<'a> {
    vm: &'a mut Vm,
    armed: &'a Armed,
}

fn stepped(step: Step) -> Stepped<Step> {
    match step {
        Step::Continue => Stepped::Continue,
        Step::Debug(DebugExit::Trap(arch)) => Stepped::Debug(arch),
        Step::Debug(DebugExit::Int3) => Stepped::Int3,
        done => Stepped::Done(done),
    }
}

impl ukvm_debug::Guest for Debugged<'_> {
    type Done = Step;

    fn vcpu(&mut self) -> &mut VcpuFd {
        self.vm.vcpu_mut()
    }

    fn memory(&self) -> &GuestMemoryMmap {
        self.vm.memory()
    }

    fn step(&mut self) -> Stepped<Step> {
        if self.vm.stop_handle().is_requested() {
            return Stepped::Done(Step::Stop(Exit::Stopped));
        }
        stepped(self.vm.step(self.armed))
    }

    fn complete(&mut self) -> Stepped<Step> {
        stepped(self.vm.complete())
    }

    fn ending(done: &Step) -> Ending {
        match done {
            Step::Stop(exit) => Ending::Exited(exit.status() as u8),
            _ => Ending::Crashed,
        }
    }

    fn killed(&mut self) -> Step {
        Step::Stop(Exit::Stopped)
    }
}

/// gdb, connected, and the layout its session uses.
pub(crate) struct Connected {
    attached: ukvm_debug::Attached,
    layout: Layout,
    /// The connection's fd, which the vCPU thread reads and writes.
    fd: std::os::fd::RawFd,
    /// The Ctrl-C thread's filter, which the first instruction waits for.
    pub(crate) confinement: Option<crate::confine::Confinement>,
}

impl Connected {
    /// The connection's fd, for the vCPU thread's filter.
    pub(crate) fn fd(&self) -> std::os::fd::RawFd {
        self.fd
    }
}

impl Pending {
    /// Waits for gdb and starts the session's Ctrl-C thread (filtered as
    /// a console thread). Called before the vCPU thread's own filter is
    /// in: accepting and starting threads are not in its allowlist.
    pub(crate) fn accept(self, vm: &Vm) -> Result<Connected> {
        eprintln!("ukvm: waiting for gdb on {}", self.listener.describe());
        let conn = self
            .listener
            .accept()
            .map_err(|e| Error::Device(e.to_string()))?;
        // A Unix socket's file goes with the listener.
        drop(self.listener);
        let kicker = vm.kicker();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&conn);
        let (mode, vm_fds) = vm.sandbox();
        // The Ctrl-C thread reads the connection and kicks the vCPU:
        // nothing else (no output but stderr, always allowed).
        let fds = ukvm_sandbox::Fds {
            events: vm_fds.events,
            gdb: vec![fd],
            ..Default::default()
        };
        let (confiner, confinement) = crate::confine::pair("gdb Ctrl-C");
        let setup: ukvm_debug::ThreadSetup =
            Box::new(move || confiner.install(ukvm_sandbox::ThreadKind::Console, mode, &fds));
        let attached = ukvm_debug::attach(conn, Arc::new(move || kicker.kick()), setup)
            .map_err(|e| Error::Device(format!("gdb: {e}")))?;
        Ok(Connected {
            attached,
            layout: self.layout,
            fd,
            confinement: Some(confinement),
        })
    }
}

/// Runs the guest under gdb. Returns the step that ended the run.
pub(crate) fn run(vm: &mut Vm, armed: &Armed, gdb: Connected) -> Result<Step> {
    vm.mark_first_run();
    vm.debugging = true;
    let mut guest = Debugged { vm, armed };
    let done = ukvm_debug::serve(&mut guest, gdb.attached, gdb.layout);
    vm.debugging = false;
    Ok(match done {
        Ok(step) => step,
        Err(e) => Step::Crash(CrashKind::UnexpectedExit(format!("gdb: {e}"))),
    })
}
