//! Everything ukvm needs to put a kernel into guest memory and make it
//! runnable: the guest physical memory layout, kernel format loaders, the
//! boot information structures they hand to the kernel, the CPUID table and
//! the initial vCPU register state.
//!
//! Nothing here talks to KVM: functions take guest memory (`vm-memory`) and
//! KVM's plain data structures (`kvm-bindings`) so they can be unit-tested
//! without `/dev/kvm`.
//!
//! - [`layout`]: where ukvm puts things in guest physical memory.
//! - [`multiboot`]: Multiboot 1 header parsing, kernel loading, info structure.
//! - [`elf`]: the few ELF facts the loaders need (program headers).
//! - [`cpu`]: GDT, segment and control register state for each entry mode.
//! - [`cpuid`]: the CPUID table the guest sees.
//! - [`bios`]: the BIOS Data Area a firmware would have left behind.

pub mod bios;
pub mod cpu;
pub mod cpuid;
pub mod elf;
mod error;
pub mod layout;
pub mod multiboot;

pub use error::{Error, Result};

use vm_memory::GuestMemoryMmap;

/// What the monitor needs to know to start the vCPU after a kernel was loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Boot {
    /// Which boot protocol the kernel was recognised as (for `--timings`/logs).
    pub format: Format,
    /// Guest physical entry point.
    pub entry: u64,
    /// Lowest guest physical address the kernel image occupies.
    pub kernel_start: u64,
    /// First guest physical address past the kernel image, its bss and modules.
    pub kernel_end: u64,
    /// Initial general purpose registers (RIP, RAX, RBX, ...).
    pub regs: kvm_bindings::kvm_regs,
    /// Processor mode the vCPU starts in.
    pub mode: cpu::Mode,
}

/// Kernel image formats ukvm recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Multiboot 1 kernel loaded through the header's a.out-kludge addresses.
    MultibootKludge,
    /// Multiboot 1 kernel loaded from its ELF program headers.
    MultibootElf,
}

impl Format {
    /// Short stable name, used in `--timings` JSON.
    pub fn name(self) -> &'static str {
        match self {
            Format::MultibootKludge => "multiboot-aout-kludge",
            Format::MultibootElf => "multiboot-elf",
        }
    }
}

/// A file loaded next to the kernel (Multiboot module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module<'a> {
    /// Name used in error messages (usually the host path).
    pub name: String,
    /// The module's bytes.
    pub data: &'a [u8],
    /// The string the kernel sees with the module.
    pub string: String,
}

/// Inputs of every boot protocol.
#[derive(Debug, Clone, Default)]
pub struct BootParams<'a> {
    /// Kernel command line (without the terminating NUL).
    pub cmdline: String,
    /// Modules loaded after the kernel, in order.
    pub modules: Vec<Module<'a>>,
}

/// Checks, without guest memory, that `image` is in a format ukvm can
/// boot, so a bad file is refused before any VM is created.
pub fn probe(image: &[u8]) -> Result<Format> {
    if image.is_empty() {
        return Err(Error::EmptyImage);
    }
    match multiboot::find_header(image)? {
        Some(h) if h.kludge.is_some() => Ok(Format::MultibootKludge),
        Some(_) => Ok(Format::MultibootElf),
        None => Err(Error::UnknownFormat),
    }
}

/// Recognises the kernel format, loads `image` into `mem` and writes the
/// boot structures the protocol requires.
pub fn load(mem: &GuestMemoryMmap, image: &[u8], params: &BootParams) -> Result<Boot> {
    if image.is_empty() {
        return Err(Error::EmptyImage);
    }
    layout::check_cmdline(&params.cmdline)?;
    bios::write_bda(mem)?;
    cpu::write_gdt(mem)?;
    match multiboot::find_header(image)? {
        Some(header) => multiboot::load(mem, image, &header, params),
        None => Err(Error::UnknownFormat),
    }
}
