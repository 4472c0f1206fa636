//! The system calls each ukvm thread may make once the guest runs, and why.
//!
//! # Adding a system call
//! Add one line to the thread kind's table ([`VCPU`], [`IO`], [`CONSOLE`],
//! or [`COMMON`] for all): `allow(Sysno::NAME, Pin::..., "why")`, pinning the
//! arguments where you can (an ioctl's fd and request, a flags value).
//! Then run `cargo test -p ukvm-sandbox`: it prints the README table to
//! paste if the README's list no longer matches. `--seccomp=log` (the
//! kernel logs what would have been refused) finds what is missing.

use kvm_bindings::{
    kvm_fpu, kvm_guest_debug, kvm_interrupt, kvm_irq_level, kvm_mp_state, kvm_msrs, kvm_regs,
    kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave,
};
use std::fmt;
pub use syscalls::Sysno;

/// The kinds of thread ukvm runs, each with its own filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// The thread that runs the vCPU loop (the main thread of `ukvm`): exits,
    /// port and MMIO devices, hvt hypercalls, instruction completion,
    /// teardown.
    Vcpu,
    /// The device I/O thread: virtio queues, TAP and disk I/O.
    Io,
    /// The console input thread: the host's stdin to COM1.
    Console,
}

impl ThreadKind {
    /// Every thread kind, in README order.
    pub const ALL: [ThreadKind; 3] = [ThreadKind::Vcpu, ThreadKind::Io, ThreadKind::Console];

    /// The system calls this thread kind may make.
    pub fn allowlist(self) -> impl Iterator<Item = &'static Allowed> {
        let own: &'static [Allowed] = match self {
            ThreadKind::Vcpu => VCPU,
            ThreadKind::Io => IO,
            ThreadKind::Console => CONSOLE,
        };
        COMMON.iter().chain(own)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::Io => "io",
            ThreadKind::Console => "console",
        }
    }
}

impl fmt::Display for ThreadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which fds a call's fd argument (argument 0) is pinned to: the fds of
/// that role in the thread's [`crate::Fds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdRole {
    /// The vCPU fd.
    Vcpu,
    /// The VM fd.
    Vm,
    /// Any fd (the terminal ioctls: the request number is still pinned).
    Any,
    /// stderr, the serial console's output, a `--timings` file.
    Output,
    /// eventfds: queue notifications, kicks, stop requests, irqfds.
    Events,
    /// TAP devices.
    Taps,
    /// Disk images.
    Disks,
    /// Outside input: the console's input.
    Input,
    /// The gdb connection.
    Gdb,
    /// `--dumpcore`'s directory.
    CoreDir,
    /// The fd a core file is written through.
    Core,
}

/// How a system call's arguments are pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// Any arguments.
    Any,
    /// `ioctl(fd, request, ..)` with this fd and request.
    Ioctl(FdRole, u64),
    /// Argument `index` (0-based, 32-bit compare) equals `value`.
    Arg(u8, u64),
    /// Argument 0 is one of the thread's fds of this role.
    Fd(FdRole),
    /// Argument `fd_arg` is one of the thread's fds of `role`, and
    /// argument `arg` equals `value`: `FdAnd(fd_arg, role, arg, value)`.
    FdAnd(u8, FdRole, u8, u64),
    /// `tgkill(our pid, any thread, SIGRTMIN)`: the vCPU kick, to a
    /// thread of this process only.
    Kick,
}

/// The interrupt controller of a VM, which decides a few of its threads'
/// calls: the timers and the injection of ukvm's own PIC and PIT, the
/// lines and halt watchdog of KVM's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Irqchip {
    /// None (Solo5 hvt guests take no interrupts), or a thread that raises
    /// none (the console's: COM1's line is a kick or an irqfd).
    #[default]
    None,
    /// ukvm's own 8259A pair and 8254.
    Userspace,
    /// KVM's in-kernel PIC, IOAPIC and PIT.
    Kvm,
}

/// Which threads an entry is for, by their VM's interrupt controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    /// Every thread of the kind.
    Always,
    /// Threads of VMs with ukvm's own controller.
    Userspace,
    /// Threads of VMs with KVM's controller.
    Kvm,
    /// Threads of VMs with either.
    AnyIrqchip,
}

impl Only {
    /// Whether the entry is in the filter of a thread whose VM has `chip`.
    pub fn holds(self, chip: Irqchip) -> bool {
        match self {
            Only::Always => true,
            Only::Userspace => chip == Irqchip::Userspace,
            Only::Kvm => chip == Irqchip::Kvm,
            Only::AnyIrqchip => chip != Irqchip::None,
        }
    }
}

/// One allowed system call with its pinned arguments.
#[derive(Debug, Clone, Copy)]
pub struct Allowed {
    /// The system call.
    pub sysno: Sysno,
    /// What its arguments must be.
    pub pin: Pin,
    /// Why the thread needs it (the README lists this).
    pub why: &'static str,
    /// Which threads of the kind need it.
    pub only: Only,
}

const fn allow(sysno: Sysno, pin: Pin, why: &'static str) -> Allowed {
    Allowed {
        sysno,
        pin,
        why,
        only: Only::Always,
    }
}

/// An entry for the threads of VMs with the interrupt controller `only`.
const fn allow_for(only: Only, sysno: Sysno, pin: Pin, why: &'static str) -> Allowed {
    Allowed {
        sysno,
        pin,
        why,
        only,
    }
}

const KVMIO: u64 = 0xAE;
const TUNTAP: u64 = b'T' as u64;

/// `_IOC(dir, type, nr, size)` as in `<asm-generic/ioctl.h>`.
const fn ioc(dir: u64, ty: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (ty << 8) | nr
}
const fn io(ty: u64, nr: u64) -> u64 {
    ioc(0, ty, nr, 0)
}
const fn iow(ty: u64, nr: u64, size: usize) -> u64 {
    ioc(1, ty, nr, size)
}
const fn ior(ty: u64, nr: u64, size: usize) -> u64 {
    ioc(2, ty, nr, size)
}
const fn iowr(ty: u64, nr: u64, size: usize) -> u64 {
    ioc(3, ty, nr, size)
}

use std::mem::size_of;

/// KVM and TUN ioctl request numbers the running VM uses.
pub mod ioctl {
    use super::*;
    /// `KVM_CHECK_EXTENSION` (on the VM fd).
    pub const KVM_CHECK_EXTENSION: u64 = io(KVMIO, 0x03);
    /// `KVM_IRQ_LINE`.
    pub const KVM_IRQ_LINE: u64 = iow(KVMIO, 0x61, size_of::<kvm_irq_level>());
    /// `KVM_RUN`.
    pub const KVM_RUN: u64 = io(KVMIO, 0x80);
    /// `KVM_GET_MP_STATE`.
    pub const KVM_GET_MP_STATE: u64 = ior(KVMIO, 0x98, size_of::<kvm_mp_state>());
    /// `KVM_INTERRUPT`.
    pub const KVM_INTERRUPT: u64 = iow(KVMIO, 0x86, size_of::<kvm_interrupt>());
    /// `KVM_GET_REGS`.
    pub const KVM_GET_REGS: u64 = ior(KVMIO, 0x81, size_of::<kvm_regs>());
    /// `KVM_SET_REGS`.
    pub const KVM_SET_REGS: u64 = iow(KVMIO, 0x82, size_of::<kvm_regs>());
    /// `KVM_GET_SREGS`.
    pub const KVM_GET_SREGS: u64 = ior(KVMIO, 0x83, size_of::<kvm_sregs>());
    /// `KVM_SET_SREGS`.
    pub const KVM_SET_SREGS: u64 = iow(KVMIO, 0x84, size_of::<kvm_sregs>());
    /// `KVM_GET_MSRS`.
    pub const KVM_GET_MSRS: u64 = iowr(KVMIO, 0x88, size_of::<kvm_msrs>());
    /// `KVM_GET_FPU` (gdb reads x87/SSE registers).
    pub const KVM_GET_FPU: u64 = ior(KVMIO, 0x8c, size_of::<kvm_fpu>());
    /// `KVM_SET_FPU`.
    pub const KVM_SET_FPU: u64 = iow(KVMIO, 0x8d, size_of::<kvm_fpu>());
    /// `KVM_SET_GUEST_DEBUG`.
    pub const KVM_SET_GUEST_DEBUG: u64 = iow(KVMIO, 0x9b, size_of::<kvm_guest_debug>());
    /// `KVM_GET_VCPU_EVENTS`.
    pub const KVM_GET_VCPU_EVENTS: u64 = ior(KVMIO, 0x9f, size_of::<kvm_vcpu_events>());
    /// `KVM_SET_VCPU_EVENTS`.
    pub const KVM_SET_VCPU_EVENTS: u64 = iow(KVMIO, 0xa0, size_of::<kvm_vcpu_events>());
    /// `KVM_GET_XSAVE`.
    pub const KVM_GET_XSAVE: u64 = ior(KVMIO, 0xa4, size_of::<kvm_xsave>());
    /// `KVM_SET_XSAVE`.
    pub const KVM_SET_XSAVE: u64 = iow(KVMIO, 0xa5, size_of::<kvm_xsave>());
    /// `KVM_GET_XCRS`.
    pub const KVM_GET_XCRS: u64 = ior(KVMIO, 0xa6, size_of::<kvm_xcrs>());
    /// `TCGETS` (`tcgetattr`, `isatty`).
    pub const TCGETS: u64 = libc::TCGETS;
    /// `TCSETS` (`tcsetattr(fd, TCSANOW, ..)`).
    pub const TCSETS: u64 = libc::TCSETS;
    /// `TUNSETOFFLOAD`.
    pub const TUNSETOFFLOAD: u64 = iow(TUNTAP, 208, size_of::<libc::c_uint>());
    /// `TUNSETVNETHDRSZ`.
    pub const TUNSETVNETHDRSZ: u64 = iow(TUNTAP, 216, size_of::<libc::c_int>());
}

use ioctl::*;
use FdRole::{
    Any as AnyFd, Core, CoreDir, Disks, Events, Gdb, Input, Output, Taps, Vcpu as VcpuFd,
    Vm as VmFd,
};

/// How `--dumpcore` creates a core file (`ukvm_debug::core_file`): a new
/// file only, write-only, not inherited.
const CORE_CREATE: u64 = (libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC) as u64;

const PRIVATE_ANON: u64 = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;

/// Both thread kinds: memory, locks, time, thread and process exit.
#[rustfmt::skip]
pub static COMMON: &[Allowed] = &[
    allow(Sysno::futex, Pin::Any, "locks shared between the threads (device mutexes)"),
    allow(Sysno::brk, Pin::Any, "heap growth (malloc)"),
    allow(Sysno::mmap, Pin::Arg(3, PRIVATE_ANON), "large allocations: private anonymous memory only"),
    allow(Sysno::mmap, Pin::Arg(3, PRIVATE_ANON | libc::MAP_NORESERVE as u64), "malloc arenas: private anonymous memory only"),
    allow(Sysno::munmap, Pin::Any, "freeing memory, guest memory at teardown"),
    allow(Sysno::mremap, Pin::Any, "growing large allocations (Vec)"),
    allow(Sysno::madvise, Pin::Arg(2, libc::MADV_DONTNEED as u64), "free() and thread exit return memory"),
    allow(Sysno::clock_gettime, Pin::Any, "timings and hvt clocks when the vDSO falls back"),
    allow(Sysno::sched_yield, Pin::Any, "lock back-off"),
    allow(Sysno::read, Pin::Fd(Events), "eventfds: queue notifications, kicks, stop requests"),
    allow(Sysno::write, Pin::Fd(Events), "eventfds: kicks, stop requests, interrupts, queue notifications"),
    allow(Sysno::write, Pin::Fd(Output), "stderr (warnings, this filter's message), the serial console, a --timings file"),
    allow_for(Only::Kvm, Sysno::ioctl, Pin::Ioctl(VmFd, KVM_IRQ_LINE), "PCI INTx interrupt lines"),
    allow(Sysno::tgkill, Pin::Kick, "kicks the vCPU thread out of KVM_RUN (SIGRTMIN, this process only)"),
    allow(Sysno::getpid, Pin::Any, "pthread_kill (the kick from a stop request) asks for the pid before tgkill"),
    allow(Sysno::ioctl, Pin::Ioctl(AnyFd, TCGETS), "reads the host terminal's mode before restoring it (isatty)"),
    allow(Sysno::ioctl, Pin::Ioctl(AnyFd, TCSETS), "restores the host terminal's mode (Ctrl-A x, exit, a fatal signal)"),
    allow(Sysno::close, Pin::Any, "teardown (closing only takes access away: not pinned)"),
    allow(Sysno::fcntl, Pin::Arg(1, libc::F_GETFD as u64), "debug builds check an fd before closing it"),
    allow(Sysno::rt_sigreturn, Pin::Any, "return from signal handlers"),
    allow(Sysno::rt_sigprocmask, Pin::Any, "thread exit blocks signals"),
    allow(Sysno::sigaltstack, Pin::Any, "thread exit removes the overflow stack"),
    allow(Sysno::exit, Pin::Any, "thread exit"),
    allow(Sysno::exit_group, Pin::Any, "process exit"),
];

/// The vCPU thread.
#[rustfmt::skip]
pub static VCPU: &[Allowed] = &[
    allow(Sysno::ioctl, Pin::Ioctl(VcpuFd, KVM_RUN), "runs the guest"),
    allow_for(Only::Userspace, Sysno::ioctl, Pin::Ioctl(VcpuFd, KVM_INTERRUPT), "injects the userspace PIC's interrupts"),
    allow_for(Only::Kvm, Sysno::ioctl, Pin::Ioctl(VcpuFd, KVM_GET_MP_STATE), "halt watchdog (KVM's irqchip): is the vCPU halted?"),
    allow_for(Only::AnyIrqchip, Sysno::timer_create, Pin::Any, "the PIT's timer when the guest first arms it; the halt watchdog's"),
    allow_for(Only::AnyIrqchip, Sysno::timer_settime, Pin::Any, "arms the PIT's timer for channel 0's next edge"),
    allow_for(Only::AnyIrqchip, Sysno::timer_delete, Pin::Any, "drops the timers when the run ends"),
    allow_for(Only::AnyIrqchip, Sysno::gettid, Pin::Any, "the timers signal the thread running the vCPU"),
    allow(Sysno::ioctl, Pin::Ioctl(VcpuFd, KVM_GET_REGS), "instruction completion, crash reports"),
    allow(Sysno::ioctl, Pin::Ioctl(VcpuFd, KVM_SET_REGS), "instruction completion"),
    allow(Sysno::ioctl, Pin::Ioctl(VcpuFd, KVM_GET_SREGS), "instruction completion (paging mode)"),
    allow(Sysno::ioctl, Pin::Ioctl(VcpuFd, KVM_SET_SREGS), "instruction completion (CR0.TS)"),
    allow(Sysno::ioctl, Pin::Ioctl(VcpuFd, KVM_GET_MSRS), "instruction completion (EFER)"),
    allow(Sysno::ioctl, Pin::Ioctl(VcpuFd, KVM_GET_VCPU_EVENTS), "instruction completion (faults)"),
    allow(Sysno::ioctl, Pin::Ioctl(VcpuFd, KVM_SET_VCPU_EVENTS), "instruction completion injects faults"),
    allow(Sysno::ioctl, Pin::Ioctl(VcpuFd, KVM_GET_XSAVE), "instruction completion (SSE state)"),
    allow(Sysno::ioctl, Pin::Ioctl(VcpuFd, KVM_SET_XSAVE), "instruction completion (SSE state)"),
    allow(Sysno::ioctl, Pin::Ioctl(VcpuFd, KVM_GET_XCRS), "instruction completion (XCR0)"),
    allow(Sysno::ioctl, Pin::Ioctl(VmFd, KVM_CHECK_EXTENSION), "instruction completion asks for KVM_CAP_SYNC_REGS"),
    allow(Sysno::ioctl, Pin::Ioctl(Taps, TUNSETVNETHDRSZ), "virtio-net DRIVER_OK sets the TAP's header length"),
    allow(Sysno::ioctl, Pin::Ioctl(Taps, TUNSETOFFLOAD), "virtio-net DRIVER_OK sets the TAP's offloads"),
    allow(Sysno::read, Pin::Fd(Taps), "hvt net read hypercall: a frame, then copied into guest memory"),
    allow(Sysno::writev, Pin::Fd(Taps), "hvt net write hypercall: a frame from guest memory"),
    allow(Sysno::preadv, Pin::Fd(Disks), "hvt block read hypercall"),
    allow(Sysno::pwritev, Pin::Fd(Disks), "hvt block write hypercall"),
    allow(Sysno::mprotect, Pin::Arg(2, (libc::PROT_READ | libc::PROT_WRITE) as u64), "instruction completion writes its code page"),
    allow(Sysno::mprotect, Pin::Arg(2, (libc::PROT_READ | libc::PROT_EXEC) as u64), "instruction completion runs its code page"),
    allow(Sysno::ppoll, Pin::Any, "hvt poll hypercall waits on the TAPs; hlt sleeps until an interrupt; the fast-exit helper waits for our exit (fds in memory: not pinnable)"),
    allow(Sysno::clone, Pin::Arg(0, (libc::CLONE_VM | libc::SIGCHLD) as u64), "fast exit: a helper that tears the VM down after we exit"),
    allow(Sysno::close_range, Pin::Any, "fast exit: the helper closes every fd"),
    allow(Sysno::pipe2, Pin::Arg(1, libc::O_CLOEXEC as u64), "fast exit: the helper waits on a pipe for our exit"),
    allow(Sysno::read, Pin::Fd(Gdb), "--gdb: packets from gdb"),
    allow(Sysno::write, Pin::Fd(Gdb), "--gdb: packets to gdb"),
    allow(Sysno::openat, Pin::FdAnd(0, CoreDir, 2, CORE_CREATE), "--dumpcore: creates the core in DIR, a new file only (O_EXCL); Landlock keeps it beneath DIR"),
    allow(Sysno::dup3, Pin::FdAnd(1, Core, 2, libc::O_CLOEXEC as u64), "--dumpcore: moves the new core onto the fd reserved for it"),
    allow(Sysno::write, Pin::Fd(Core), "--dumpcore: the core"),
    allow(Sysno::lseek, Pin::Fd(Core), "--dumpcore: skips pages of zeros (a sparse core)"),
    allow(Sysno::ioctl, Pin::Ioctl(VcpuFd, KVM_SET_GUEST_DEBUG), "--gdb: breakpoints, single-step"),
    allow(Sysno::ioctl, Pin::Ioctl(VcpuFd, KVM_GET_FPU), "--gdb: x87/SSE registers"),
    allow(Sysno::ioctl, Pin::Ioctl(VcpuFd, KVM_SET_FPU), "--gdb: x87/SSE registers"),
];

/// The I/O thread.
#[rustfmt::skip]
pub static IO: &[Allowed] = &[
    allow(Sysno::epoll_wait, Pin::Any, "waits for queue kicks and TAP frames"),
    allow(Sysno::epoll_pwait, Pin::Any, "waits for queue kicks and TAP frames (libc's epoll_wait)"),
    allow(Sysno::epoll_ctl, Pin::Arg(1, libc::EPOLL_CTL_ADD as u64), "a device (re)activated starts watching its fds"),
    allow(Sysno::epoll_ctl, Pin::Arg(1, libc::EPOLL_CTL_DEL as u64), "a failed TAP or a reset device stops being watched"),
    allow(Sysno::epoll_ctl, Pin::Arg(1, libc::EPOLL_CTL_MOD as u64), "a device changes what it waits for (TX backpressure)"),
    allow(Sysno::readv, Pin::Fd(Taps), "virtio-net: received frames into guest buffers"),
    allow(Sysno::read, Pin::Fd(Taps), "the hvt network ring's thread receives a frame"),
    allow(Sysno::writev, Pin::Fd(Taps), "virtio-net: frames from guest buffers"),
    allow(Sysno::preadv, Pin::Fd(Disks), "virtio-blk: disk reads into guest buffers"),
    allow(Sysno::pwritev, Pin::Fd(Disks), "virtio-blk: disk writes from guest buffers"),
    allow(Sysno::fdatasync, Pin::Fd(Disks), "virtio-blk: flush requests"),
];

/// The console input thread.
#[rustfmt::skip]
pub static CONSOLE: &[Allowed] = &[
    allow(Sysno::ppoll, Pin::Any, "waits for input (stdin, gdb's Ctrl-C) or the end of the run (fds in memory: not pinnable)"),
    allow(Sysno::read, Pin::Fd(Input), "the console's input"),
    allow(Sysno::read, Pin::Fd(Gdb), "--gdb: gdb's Ctrl-C while the guest runs"),
];

/// The README's allowlist table, generated from the tables above.
pub fn markdown() -> String {
    let mut out = String::from("| thread | system call | arguments | why |\n|---|---|---|---|\n");
    for (thread, list) in [
        ("vcpu, io, console", COMMON),
        ("vcpu", VCPU),
        ("io", IO),
        ("console", CONSOLE),
    ] {
        for a in list {
            let pin = match a.pin {
                Pin::Any => "any".to_string(),
                Pin::Ioctl(fd, req) => format!("{} fd, request {req:#x}", fd_name(fd)),
                Pin::Arg(i, v) => format!("arg{i} = {v:#x}"),
                Pin::Fd(fd) => format!("{} fds", fd_name(fd)),
                Pin::FdAnd(i, fd, j, v) => format!("arg{i}: {} fd, arg{j} = {v:#x}", fd_name(fd)),
                Pin::Kick => "own pid, SIGRTMIN".to_string(),
            };
            let pin = match a.only {
                Only::Always => pin,
                Only::Userspace => format!("{pin}; ukvm's PIC and PIT only"),
                Only::Kvm => format!("{pin}; KVM's irqchip only"),
                Only::AnyIrqchip => format!("{pin}; with an interrupt controller"),
            };
            out.push_str(&format!(
                "| {thread} | {} | {pin} | {} |\n",
                a.sysno.name(),
                a.why
            ));
        }
    }
    out
}

fn fd_name(fd: FdRole) -> &'static str {
    match fd {
        FdRole::Vcpu => "vCPU",
        FdRole::Vm => "VM",
        FdRole::Any => "any",
        FdRole::Output => "output",
        FdRole::Events => "eventfd",
        FdRole::Taps => "TAP",
        FdRole::Disks => "disk",
        FdRole::Input => "input",
        FdRole::Gdb => "gdb connection",
        FdRole::CoreDir => "--dumpcore directory",
        FdRole::Core => "core file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        // Values from <linux/kvm.h> and <linux/if_tun.h> on x86-64.
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(KVM_SET_REGS, 0x4090_ae82);
        assert_eq!(KVM_GET_SREGS, 0x8138_ae83);
        assert_eq!(KVM_IRQ_LINE, 0x4008_ae61);
        assert_eq!(KVM_GET_XSAVE, 0x9000_aea4);
        assert_eq!(KVM_INTERRUPT, 0x4004_ae86);
        assert_eq!(KVM_GET_MP_STATE, 0x8004_ae98);
        assert_eq!(TUNSETOFFLOAD, 0x4004_54d0);
        assert_eq!(TUNSETVNETHDRSZ, 0x4004_54d8);
    }

    #[test]
    fn io_thread_pins_no_vcpu_ioctl() {
        // ukvm confines the I/O thread before the vCPU exists (its filter
        // has no vCPU fd): an ioctl pinned to it would be refused.
        for a in ThreadKind::Io.allowlist() {
            assert!(
                !matches!(a.pin, Pin::Ioctl(FdRole::Vcpu, _)),
                "{}: {}",
                a.sysno.name(),
                a.why
            );
        }
    }

    #[test]
    fn readme_lists_every_allowed_system_call() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        let table = markdown();
        assert!(
            readme.contains(&table),
            "README.md's seccomp allowlist is out of date; paste this table:\n{table}"
        );
    }
}
