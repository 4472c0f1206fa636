//! Descriptor tables and the segment/control register state each entry mode
//! needs. KVM takes the hidden segment state from `kvm_sregs`, but guests
//! also read the GDT in memory (`lsl`, `sgdt`, reloading a selector), so the
//! two are built from the same descriptor values.

use crate::{layout, Error, Result};
use kvm_bindings::{kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Selector of the flat 32-bit code segment.
pub const CODE32_SELECTOR: u16 = 0x08;
/// Selector of the flat data segment.
pub const DATA_SELECTOR: u16 = 0x10;
/// Selector of the 64-bit code segment.
pub const CODE64_SELECTOR: u16 = 0x18;
/// Selector of the (dummy) task state segment KVM requires in TR.
pub const TSS_SELECTOR: u16 = 0x20;

/// The GDT: null, code32, data, code64, TSS. Descriptor encoding: base 0,
/// limit 0xFFFFF pages (4 GiB) except the TSS.
pub const GDT: [u64; 5] = [
    0,
    0x00cf_9b00_0000_ffff, // code: present, DPL0, exec/read, accessed, D=1, G=1
    0x00cf_9300_0000_ffff, // data: present, DPL0, read/write, accessed, B=1, G=1
    0x00af_9b00_0000_ffff, // code: as above with L=1, D=0
    0x0000_8b00_0000_0067, // TSS: present, busy 32-bit TSS, limit 0x67
];

/// CR0.PE: protected mode.
pub const CR0_PE: u64 = 1;
/// CR0.ET: extension type (always 1 on modern CPUs).
pub const CR0_ET: u64 = 1 << 4;
/// CR0.PG: paging.
pub const CR0_PG: u64 = 1 << 31;
/// CR4.PAE: physical address extension (required for long mode).
pub const CR4_PAE: u64 = 1 << 5;
/// EFER.LME: long mode enable.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;
/// Page table entry bits: present, writable.
const PTE_PRESENT_RW: u64 = 0x3;
/// Page directory entry bit: 2 MiB page.
const PDE_PS: u64 = 1 << 7;
/// How much the long-mode page tables identity-map: the first 4 GiB,
/// which covers every address a loader writes (kernel, zero page,
/// command line, initrd below 4 GiB) and the MMIO hole.
pub const IDENTITY_MAPPED: u64 = 4 << 30;

/// Processor mode a boot protocol enters the kernel in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 32-bit protected mode, flat segments, paging off (Multiboot, PVH).
    Protected32,
    /// 64-bit long mode, flat segments, paging on with the first 4 GiB
    /// identity-mapped by the tables at [`layout::PAGE_TABLES_ADDR`]
    /// (64-bit Linux boot protocol).
    Long64,
    /// [`Mode::Long64`] as a Solo5 hvt guest expects it: write protection
    /// and NX on (the loader's page tables carry segment permissions), SSE
    /// enabled (see [`crate::hvt::setup_sregs`]).
    Solo5Hvt,
}

impl Mode {
    /// Short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Protected32 => "32-bit protected mode",
            Mode::Long64 => "64-bit long mode",
            Mode::Solo5Hvt => "64-bit long mode (Solo5 hvt)",
        }
    }
}

/// Writes identity-mapping page tables at [`layout::PAGE_TABLES_ADDR`]:
/// PML4, one PDPT, and four page directories of 2 MiB pages (4 GiB), all
/// inside the boot area (0x9000..0xF000).
pub fn write_page_tables(mem: &GuestMemoryMmap) -> Result<()> {
    let pml4 = layout::PAGE_TABLES_ADDR;
    let pdpt = pml4 + 0x1000;
    let pd = pdpt + 0x1000;
    let write = |addr: u64, value: u64| {
        mem.write_obj(value, GuestAddress(addr))
            .map_err(|source| Error::GuestMemory { addr, source })
    };
    write(pml4, pdpt | PTE_PRESENT_RW)?;
    let dirs = IDENTITY_MAPPED >> 30;
    for i in 0..dirs {
        write(pdpt + 8 * i, (pd + 0x1000 * i) | PTE_PRESENT_RW)?;
    }
    // One write per directory instead of 2048 small ones.
    let mut entries = vec![0u8; 4096];
    for i in 0..dirs {
        for (j, chunk) in entries.chunks_exact_mut(8).enumerate() {
            let addr = (i << 30) + ((j as u64) << 21);
            chunk.copy_from_slice(&(addr | PDE_PS | PTE_PRESENT_RW).to_le_bytes());
        }
        let at = pd + 0x1000 * i;
        mem.write_slice(&entries, GuestAddress(at))
            .map_err(|source| Error::GuestMemory { addr: at, source })?;
    }
    Ok(())
}

/// Writes the GDT at [`layout::GDT_ADDR`].
pub fn write_gdt(mem: &GuestMemoryMmap) -> Result<()> {
    for (i, entry) in GDT.iter().enumerate() {
        let addr = layout::GDT_ADDR + 8 * i as u64;
        mem.write_obj(*entry, GuestAddress(addr))
            .map_err(|source| Error::GuestMemory { addr, source })?;
    }
    Ok(())
}

/// Decodes a GDT descriptor into KVM's segment form.
pub fn segment(selector: u16) -> kvm_segment {
    let entry = GDT[usize::from(selector >> 3)];
    let base = ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = (entry & 0xffff) | ((entry >> 32) & 0xf_0000);
    let g = ((entry >> 55) & 1) as u8;
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    kvm_segment {
        base,
        limit: limit as u32,
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        s: ((entry >> 44) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        present: ((entry >> 47) & 1) as u8,
        avl: ((entry >> 52) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        db: ((entry >> 54) & 1) as u8,
        g,
        unusable: 0,
        padding: 0,
    }
}

/// Sets `sregs` for `mode`, keeping what KVM initialised that the mode does
/// not define (APIC base, for instance).
pub fn setup_sregs(sregs: &mut kvm_sregs, mode: Mode) {
    match mode {
        Mode::Protected32 => protected32(sregs),
        Mode::Long64 => long64(sregs),
        Mode::Solo5Hvt => crate::hvt::setup_sregs(sregs),
    }
}

/// Long mode as the 64-bit Linux boot protocol asks: paging on, the
/// identity map loaded, flat 64-bit code segment, data segments flat.
/// (The protocol names selectors 0x10/0x18; Linux loads its own GDT before
/// it relies on any selector value, as Firecracker's 0x08 code selector
/// shows, so ukvm keeps one GDT for every mode.)
fn long64(sregs: &mut kvm_sregs) {
    protected32(sregs);
    sregs.cs = segment(CODE64_SELECTOR);
    sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
    sregs.cr3 = layout::PAGE_TABLES_ADDR;
    sregs.cr4 = CR4_PAE;
    sregs.efer = EFER_LME | EFER_LMA;
}

fn protected32(sregs: &mut kvm_sregs) {
    let data = segment(DATA_SELECTOR);
    sregs.cs = segment(CODE32_SELECTOR);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment(TSS_SELECTOR);
    sregs.ldt = kvm_segment {
        unusable: 1,
        type_: 2,
        present: 1,
        ..Default::default()
    };
    sregs.gdt.base = layout::GDT_ADDR;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    // No IDT: a fault before the kernel installs its own is a triple fault,
    // which the monitor reports, instead of a jump into garbage.
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = CR0_PE | CR0_ET;
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_segments_decode() {
        let cs = segment(CODE32_SELECTOR);
        assert_eq!(
            (cs.base, cs.limit, cs.type_, cs.db, cs.l),
            (0, 0xffff_ffff, 0xb, 1, 0)
        );
        assert_eq!((cs.present, cs.s, cs.g, cs.dpl), (1, 1, 1, 0));
        let ds = segment(DATA_SELECTOR);
        assert_eq!((ds.limit, ds.type_, ds.db), (0xffff_ffff, 0x3, 1));
        let cs64 = segment(CODE64_SELECTOR);
        assert_eq!((cs64.l, cs64.db), (1, 0));
        let tr = segment(TSS_SELECTOR);
        assert_eq!((tr.limit, tr.type_, tr.s, tr.g), (0x67, 0xb, 0, 0));
    }

    #[test]
    fn protected_mode_has_paging_off() {
        let mut sregs = kvm_sregs::default();
        setup_sregs(&mut sregs, Mode::Protected32);
        assert_eq!(sregs.cr0 & (1 << 31), 0);
        assert_eq!(sregs.cr0 & CR0_PE, CR0_PE);
        assert_eq!(sregs.cs.selector, CODE32_SELECTOR);
        assert_eq!(sregs.ss.selector, DATA_SELECTOR);
        assert_eq!(sregs.gdt.limit, 39);
    }

    #[test]
    fn long_mode_identity_maps_four_gib() {
        let mut sregs = kvm_sregs::default();
        setup_sregs(&mut sregs, Mode::Long64);
        assert_eq!(sregs.cs.l, 1);
        assert_eq!(sregs.cr3, layout::PAGE_TABLES_ADDR);
        assert_eq!(sregs.efer, EFER_LME | EFER_LMA);
        assert_ne!(sregs.cr0 & CR0_PG, 0);
        let mem = GuestMemoryMmap::from_ranges(&layout::ram_ranges(16 << 20)).unwrap();
        write_page_tables(&mem).unwrap();
        let read = |a: u64| mem.read_obj::<u64>(GuestAddress(a)).unwrap();
        assert_eq!(read(0x9000), 0xa003);
        assert_eq!(read(0xa000 + 3 * 8), 0xe003);
        assert_eq!(read(0xb000 + 8), 0x20_0083);
        // Last 2 MiB page below 4 GiB.
        assert_eq!(read(0xe000 + 511 * 8), 0xffe0_0083);
        const { assert!(layout::PAGE_TABLES_ADDR + 6 * 0x1000 <= layout::BOOT_AREA_END) };
    }
}
