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
//! - [`pvh`]: PVH entry (ELF64 with a Xen PHYS32_ENTRY note), `hvm_start_info`.
//! - [`linux`]: the Linux boot protocol: bzImage and ELF64 `vmlinux`, zero page.
//! - [`hvt`]: Solo5 hvt guests: ABI and manifest notes, loading, boot info.
//! - [`elf`]: the few ELF facts the loaders need (program headers).
//! - [`cpu`]: GDT, segment and control register state for each entry mode.
//! - [`cpuid`]: the CPUID table the guest sees.
//! - [`acpi`]: the ACPI tables Linux-style guests get (APIC, PCI INTx, S5).
//! - [`bios`]: the BIOS Data Area a firmware would have left behind.
//!
//! # Kernel formats and how they are detected
//!
//! [`load`] and [`probe`] look at the file in this order and take the first
//! rule that matches:
//!
//! 1. A Multiboot 1 header with a valid checksum in the first 8 KiB:
//!    Multiboot (a.out-kludge addresses when header flag bit 16 is set,
//!    ELF program headers otherwise). It wins over everything below, so an
//!    ELF64 unikernel that also carries a PVH note (Unikraft, Hermit) still
//!    boots the way it did.
//! 2. An ELF64 executable with a Solo5 ABI note (`.note.solo5.abi`) and no
//!    Multiboot header: a Solo5 hvt guest ([`hvt`]), entered in long mode
//!    with RDI = `hvt_boot_info`. A note for another Solo5 target or ABI
//!    version is an error naming it. (Solo5 virtio images carry a
//!    Multiboot header and take rule 1.)
//! 3. An ELF64 x86-64 executable with a `XEN_ELFNOTE_PHYS32_ENTRY` note:
//!    PVH, entered in 32-bit protected mode at the note's address with
//!    EBX = `hvm_start_info`.
//! 4. Any other ELF64 x86-64 executable: a Linux `vmlinux`, entered at
//!    `e_entry` in 64-bit mode (identity-mapped 4 GiB) with RSI = zero page.
//! 5. "HdrS" at offset 0x202: a bzImage, entered at its 64-bit entry (load
//!    address + 0x200, long mode) when `xloadflags` has XLF_KERNEL_64, else
//!    at `code32_start` in protected mode, ESI = zero page either way.
//!
//! A Multiboot magic with a bad checksum does not stop rules 2-4 (the magic
//! can occur by chance in a large kernel); when nothing else matches, the
//! checksum error is reported.

pub mod acpi;
pub mod bios;
pub mod cpu;
pub mod cpuid;
pub mod elf;
mod error;
pub mod hvt;
pub mod layout;
pub mod linux;
pub mod multiboot;
pub mod pvh;

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
    /// Where the initrd went: `(address, size)`.
    pub initrd: Option<(u64, u64)>,
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
    /// ELF64 kernel with a PVH entry note.
    Pvh,
    /// ELF64 Linux `vmlinux` booted with the 64-bit Linux boot protocol.
    LinuxElf,
    /// Linux bzImage (64-bit entry when the kernel has one, else 32-bit).
    BzImage,
    /// Solo5 hvt guest (ELF64 with the Solo5 ABI note for target hvt).
    Solo5Hvt,
}

impl Format {
    /// Short stable name, used in `--timings` JSON.
    pub fn name(self) -> &'static str {
        match self {
            Format::MultibootKludge => "multiboot-aout-kludge",
            Format::MultibootElf => "multiboot-elf",
            Format::Pvh => "pvh",
            Format::LinuxElf => "linux-elf64",
            Format::BzImage => "linux-bzimage",
            Format::Solo5Hvt => "solo5-hvt",
        }
    }
}

impl Boot {
    /// One line for `--verbose`: format, entry, mode and where things went.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "kernel format {}, entry {:#x} in {}, image [{:#x}, {:#x})",
            self.format.name(),
            self.entry,
            self.mode.name(),
            self.kernel_start,
            self.kernel_end
        );
        if let Some((addr, size)) = self.initrd {
            s.push_str(&format!(", initrd [{addr:#x}, {:#x})", addr + size));
        }
        s
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
    /// The kernel's file name. A Multiboot kernel gets it as the first
    /// word of its command line, as GRUB and QEMU pass it; other formats
    /// ignore it.
    pub kernel_name: String,
    /// Modules loaded after the kernel, in order (Multiboot only).
    pub modules: Vec<Module<'a>>,
    /// Initial ramdisk (Linux and PVH only).
    pub initrd: Option<&'a [u8]>,
    /// Guest physical address of the ACPI RSDP, when the monitor wrote
    /// ACPI tables (given to Linux and PVH kernels).
    pub acpi_rsdp: Option<u64>,
}

/// Checks, without guest memory, that `image` is in a format ukvm can
/// boot, so a bad file is refused before any VM is created.
pub fn probe(image: &[u8]) -> Result<Format> {
    if image.is_empty() {
        return Err(Error::EmptyImage);
    }
    match detect(image)? {
        Detected::Multiboot(h) if h.kludge.is_some() => Ok(Format::MultibootKludge),
        Detected::Multiboot(_) => Ok(Format::MultibootElf),
        Detected::Other(format) => Ok(format),
    }
}

enum Detected {
    Multiboot(multiboot::Header),
    Other(Format),
}

/// Applies the detection rules in the crate documentation.
fn detect(image: &[u8]) -> Result<Detected> {
    let multiboot_error = match multiboot::find_header(image) {
        Ok(Some(header)) => return Ok(Detected::Multiboot(header)),
        Ok(None) => None,
        Err(e) => Some(e),
    };
    if let Some(note) = hvt::abi_note(image)? {
        // A Solo5 image without a Multiboot header is hvt (or a target
        // ukvm cannot run: say which).
        hvt::check_abi(note)?;
        elf::parse(image)?;
        return Ok(Detected::Other(Format::Solo5Hvt));
    }
    let other = if elf::is_elf(image) && image.get(4) == Some(&2) {
        // Parse errors of an ELF64 file are the user's best clue.
        elf::parse(image)?;
        Some(match elf::pvh_entry(image)? {
            Some(_) => Format::Pvh,
            None => Format::LinuxElf,
        })
    } else if linux::is_bzimage(image) {
        Some(Format::BzImage)
    } else {
        None
    };
    match (other, multiboot_error) {
        (Some(format), _) => Ok(Detected::Other(format)),
        (None, Some(e)) => Err(e),
        (None, None) => Err(Error::UnknownFormat),
    }
}

/// Recognises the kernel format, loads `image` into `mem` and writes the
/// boot structures the protocol requires.
pub fn load(mem: &GuestMemoryMmap, image: &[u8], params: &BootParams) -> Result<Boot> {
    if image.is_empty() {
        return Err(Error::EmptyImage);
    }
    layout::check_cmdline(&params.cmdline)?;
    layout::check_cmdline(&params.kernel_name)?;
    bios::write_bda(mem)?;
    cpu::write_gdt(mem)?;
    match detect(image)? {
        Detected::Multiboot(_) if params.initrd.is_some() => Err(Error::InitrdNotSupported),
        Detected::Multiboot(header) => multiboot::load(mem, image, &header, params),
        Detected::Other(Format::Pvh) => pvh::load(mem, image, params),
        Detected::Other(Format::LinuxElf) => linux::load_vmlinux(mem, image, params),
        // Through this generic entry an hvt guest gets no devices attached;
        // the monitor calls hvt::load with its attachments.
        Detected::Other(Format::Solo5Hvt) => hvt::load(
            mem,
            image,
            &hvt::HvtParams {
                cmdline: params.cmdline.clone(),
                ..Default::default()
            },
        ),
        Detected::Other(_) => linux::load_bzimage(mem, image, params),
    }
}
