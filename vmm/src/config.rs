//! The VM configuration and its builder. Everything a user can get wrong is
//! checked in [`VmConfig::build`] before any KVM object exists.

use crate::error::{Error, Result};
use crate::interrupts::IrqChipKind;
use crate::vm::Vm;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use ukvm_boot::layout;
use ukvm_sandbox::{Jail, SeccompMode};

/// Default guest memory, in MiB.
pub const DEFAULT_MEM_MIB: u64 = 64;

/// Where the kernel comes from.
#[derive(Debug, Clone)]
pub enum Kernel {
    /// A file on the host.
    Path(PathBuf),
    /// An image already in memory (embedded demo, tests).
    Bytes {
        /// Name used in error messages.
        name: String,
        /// The image.
        bytes: Vec<u8>,
    },
}

/// A Multiboot module: a file loaded next to the kernel, with a string.
#[derive(Debug, Clone)]
pub struct ModuleConfig {
    /// Host file.
    pub path: PathBuf,
    /// String passed with the module (defaults to the file name).
    pub string: String,
}

/// Configuration of one VM. Build with the setters, then call
/// [`VmConfig::build`].
pub struct VmConfig {
    pub(crate) kernel: Option<Kernel>,
    pub(crate) kernel_name: Option<String>,
    pub(crate) cmdline: String,
    pub(crate) mem_mib: u64,
    pub(crate) modules: Vec<ModuleConfig>,
    pub(crate) initrd: Option<PathBuf>,
    pub(crate) serial: Box<dyn Write + Send>,
    pub(crate) disks: Vec<String>,
    pub(crate) nets: Vec<String>,
    pub(crate) hvt_net_ring: bool,
    pub(crate) start: Option<Instant>,
    pub(crate) args_parsed: Option<Instant>,
    pub(crate) seccomp: SeccompMode,
    pub(crate) jail: Jail,
    pub(crate) irqchip: IrqChipKind,
    pub(crate) gdb: Option<ukvm_debug::GdbAddr>,
    pub(crate) dumpcore: Option<PathBuf>,
    pub(crate) serial_input: Option<std::os::fd::OwnedFd>,
    /// The serial writer is the default one, on stdout (fd 1).
    pub(crate) serial_is_stdout: bool,
    /// More fds the vCPU thread may write under its filter.
    pub(crate) sandbox_output: Vec<std::os::fd::RawFd>,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            kernel: None,
            kernel_name: None,
            cmdline: String::new(),
            mem_mib: DEFAULT_MEM_MIB,
            modules: Vec::new(),
            initrd: None,
            serial: Box::new(std::io::stdout()),
            disks: Vec::new(),
            nets: Vec::new(),
            hvt_net_ring: true,
            start: None,
            args_parsed: None,
            seccomp: SeccompMode::Off,
            jail: Jail::default(),
            irqchip: IrqChipKind::default(),
            gdb: None,
            dumpcore: None,
            serial_input: None,
            serial_is_stdout: true,
            sandbox_output: Vec::new(),
        }
    }
}

impl VmConfig {
    /// A configuration with no kernel, an empty command line,
    /// [`DEFAULT_MEM_MIB`] of memory and the serial console on stdout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Boots the kernel in file `path`.
    pub fn kernel_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.kernel = Some(Kernel::Path(path.into()));
        self
    }

    /// Boots the kernel image `bytes`; `name` appears in error messages.
    pub fn kernel_bytes(mut self, name: impl Into<String>, bytes: Vec<u8>) -> Self {
        self.kernel = Some(Kernel::Bytes {
            name: name.into(),
            bytes,
        });
        self
    }

    /// Sets the name a Multiboot kernel finds as the first word of its
    /// command line (GRUB and QEMU put the kernel's file name there).
    /// Default: the path given to [`VmConfig::kernel_path`] as given, or the
    /// name given to [`VmConfig::kernel_bytes`].
    pub fn kernel_name(mut self, name: impl Into<String>) -> Self {
        self.kernel_name = Some(name.into());
        self
    }

    /// Sets the kernel command line.
    pub fn cmdline(mut self, cmdline: impl Into<String>) -> Self {
        self.cmdline = cmdline.into();
        self
    }

    /// Sets the guest memory size in MiB.
    pub fn mem_mib(mut self, mib: u64) -> Self {
        self.mem_mib = mib;
        self
    }

    /// Adds a Multiboot module.
    pub fn module(mut self, path: impl Into<PathBuf>, string: Option<String>) -> Self {
        let path = path.into();
        let string = string.unwrap_or_else(|| path.display().to_string());
        self.modules.push(ModuleConfig { path, string });
        self
    }

    /// Loads `path` as the initial ramdisk of a Linux or PVH kernel, at the
    /// highest address its boot protocol allows.
    pub fn initrd(mut self, path: impl Into<PathBuf>) -> Self {
        self.initrd = Some(path.into());
        self
    }

    /// Sends the guest's serial console output to `out`. Under
    /// [`VmConfig::seccomp`], an `out` that writes to an fd needs
    /// [`VmConfig::sandbox_output`] with it: the filter lets the vCPU
    /// thread write only the fds it was told of.
    pub fn serial(mut self, out: Box<dyn Write + Send>) -> Self {
        self.serial = out;
        self.serial_is_stdout = false;
        self
    }

    /// Lets the vCPU thread write `fd` under its seccomp filter: the fd
    /// behind a [`VmConfig::serial`] writer, or one the caller writes on
    /// that thread after [`Vm::run`] (the CLI's `--timings` file). stderr
    /// is always allowed, stdout when the serial console is the default.
    pub fn sandbox_output(mut self, fd: std::os::fd::RawFd) -> Self {
        self.sandbox_output.push(fd);
        self
    }

    /// Sends what can be read from `input` (the CLI passes its stdin) to
    /// COM1's receive side; Ctrl-A x read there ends the run with
    /// [`crate::Exit::Stopped`]. Without it the guest's UART receives
    /// nothing.
    pub fn serial_input(mut self, input: std::os::fd::OwnedFd) -> Self {
        self.serial_input = Some(input);
        self
    }

    /// Attaches a disk (`FILE[,ro|rw]`).
    pub fn disk(mut self, spec: impl Into<String>) -> Self {
        self.disks.push(spec.into());
        self
    }

    /// Attaches a NIC on a TAP interface (`NAME[,mac=..]`).
    pub fn net(mut self, spec: impl Into<String>) -> Self {
        self.nets.push(spec.into());
        self
    }

    /// Whether a Solo5 hvt guest with NICs is offered the network ring
    /// (Solo5 0.11+ takes it and moves frames without VM exits); on by
    /// default. Off, such guests use the net hypercalls, as older Solo5
    /// always does.
    pub fn hvt_net_ring(mut self, offer: bool) -> Self {
        self.hvt_net_ring = offer;
        self
    }

    /// Measures boot phases from `origin` instead of from [`VmConfig::build`]
    /// (the CLI passes the process creation time).
    pub fn timing_origin(mut self, origin: Instant) -> Self {
        self.start = Some(origin);
        self
    }

    /// Records when the caller finished parsing its arguments.
    pub fn args_parsed_at(mut self, at: Instant) -> Self {
        self.args_parsed = Some(at);
        self
    }

    /// Filters the system calls of the VM's threads (see `ukvm_sandbox`):
    /// the I/O thread's filter is installed when it starts, the vCPU
    /// thread's in [`Vm::run`], on the thread that calls it, before the
    /// guest's first instruction. Off by default in the library, because
    /// the filter stays on the caller's thread after the run; the `ukvm`
    /// command turns it on.
    pub fn seccomp(mut self, mode: SeccompMode) -> Self {
        self.seccomp = mode;
        self
    }

    /// Enters `jail` (chroot, user, Landlock) once the VM's files are
    /// open, before its I/O thread starts. A uid change applies to the
    /// whole process.
    pub fn jail(mut self, jail: Jail) -> Self {
        self.jail = jail;
        self
    }

    /// Chooses the interrupt controller of Multiboot guests: ukvm's own
    /// 8259A pair and 8254 (the default) or KVM's in-kernel ones.
    /// Linux-style kernels always get KVM's (they need its APICs); Solo5
    /// hvt guests get none.
    pub fn irqchip(mut self, kind: IrqChipKind) -> Self {
        self.irqchip = kind;
        self
    }

    /// Waits for gdb on `addr` before the first instruction and runs the
    /// guest under it (see the README's "Debugging").
    pub fn gdb(mut self, addr: ukvm_debug::GdbAddr) -> Self {
        self.gdb = Some(addr);
        self
    }

    /// Writes an ELF core file into `dir` when the guest crashes or a
    /// Solo5 hvt guest aborts (see the README's "Core dumps").
    pub fn dumpcore(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dumpcore = Some(dir.into());
        self
    }

    /// Guest memory in bytes.
    pub(crate) fn mem_bytes(&self) -> u64 {
        self.mem_mib << 20
    }

    /// Checks what needs no host resources.
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(dir) = &self.dumpcore {
            if !dir.is_dir() {
                return Err(Error::Config(format!(
                    "--dumpcore {}: not a directory",
                    dir.display()
                )));
            }
        }
        let (min, max) = (layout::MIN_MEM_SIZE >> 20, layout::MAX_MEM_SIZE >> 20);
        if self.mem_mib < min || self.mem_mib > max {
            return Err(Error::MemSize {
                mib: self.mem_mib,
                min,
                max,
            });
        }
        layout::check_cmdline(&self.cmdline)
            .map_err(|e| Error::Config(format!("--cmdline: {e}")))?;
        if let Some(name) = &self.kernel_name {
            layout::check_cmdline(name).map_err(|e| Error::Config(format!("kernel name: {e}")))?;
        }
        if self.kernel.is_none() {
            return Err(Error::NoKernel);
        }
        // --disk/--net are checked by the machine that takes them: PCI
        // slots for PC guests, the manifest for hvt guests.
        Ok(())
    }

    /// Validates the configuration, reads the kernel, creates the VM and
    /// loads the kernel into it. The VM is ready to [`Vm::run`].
    pub fn build(self) -> Result<Vm> {
        self.validate()?;
        Vm::new(self)
    }
}
