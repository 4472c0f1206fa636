//! Minimal ACPI tables for Linux-style guests (PVH, vmlinux, bzImage).
//!
//! Linux kernels built without `CONFIG_X86_MPPARSE` (Debian's cloud kernel,
//! most distribution kernels) learn about the APIC, the IOAPIC and PCI
//! interrupt routing only from ACPI. ukvm writes the smallest set that
//! describes its machine, built with the `acpi_tables` crate:
//!
//! - **RSDP** (revision 2) at [`layout::ACPI_ADDR`], pointing at the XSDT.
//! - **XSDT** listing the FADT and the MADT.
//! - **FADT** (not hardware-reduced: the machine has a PIC, a PIT and an
//!   i8042): SCI on IRQ 9, no SMI command port (the machine starts in ACPI
//!   mode), a PM1a event block and a PM1a control block on I/O ports, and
//!   `IAPC_BOOT_ARCH` = legacy devices, 8042, no VGA, no MSI. Linux's
//!   `poweroff` writes SLP_TYP = [`Machine::slp_typ_s5`] (from `\_S5`) with
//!   SLP_EN to the control block, which the monitor turns into the end of
//!   the run.
//! - **FACS**, which a FADT of this kind points at.
//! - **MADT**: one local APIC (ID 0), the IOAPIC at [`IOAPIC_ADDR`] with GSI
//!   base 0, the interrupt source override ISA IRQ 0 → GSI 2 (the PC
//!   convention; the monitor routes KVM's PIT to IOAPIC pin 2 to match), a
//!   level-triggered, active-low override for every PCI interrupt line and
//!   the SCI, and LINT1 as NMI.
//! - **DSDT**: the PCI host bridge `\_SB.PCI0` (PNP0A03, bus 0, its I/O and
//!   memory windows) with a `_PRT` that routes INTA of each slot to the
//!   line the monitor assigns, and `\_S5`.
//!
//! KVM's IOAPIC ignores polarity (a raised line is asserted), so the
//! active-low flags only keep Linux's view consistent with `_PRT` entries,
//! which Linux treats as level, active low.

use crate::layout;
use crate::{Error, Result};
use acpi_tables::aml;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, ProcessorLocalApic};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{Aml, AmlSink};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// OEM ID in every table.
pub const OEM_ID: [u8; 6] = *b"UKVM  ";
/// Guest physical address of the IOAPIC (KVM's in-kernel IOAPIC lives here).
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// Guest physical address of the local APIC.
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
/// ISA IRQ the PIT raises, and the GSI (IOAPIC pin) it is wired to.
pub const TIMER_IRQ: u8 = 0;
/// IOAPIC pin of the timer (override of [`TIMER_IRQ`]).
pub const TIMER_GSI: u32 = 2;
/// Last valid address of the ACPI area (the BIOS area ends at 1 MiB).
const ACPI_END: u64 = layout::HIGH_MEM_START;
/// MADT flag: the machine also has dual 8259 PICs.
const MADT_PCAT_COMPAT: u32 = 1;
/// MADT interrupt source override flags: level-triggered, active low.
pub const MPS_LEVEL_LOW: u16 = 0b1111;
/// MADT interrupt source override flags: conforming to the bus (ISA: edge,
/// active high).
pub const MPS_CONFORMING: u16 = 0;
/// `IAPC_BOOT_ARCH`: legacy devices, an 8042, no VGA, no MSI.
const IAPC_BOOT_ARCH: u16 = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3);

/// The facts of the machine the tables describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// `(slot, irq)`: the interrupt line of INTA of each PCI slot on bus 0
    /// that can hold a device.
    pub pci_irqs: Vec<(u8, u8)>,
    /// IRQ of the System Control Interrupt.
    pub sci_irq: u8,
    /// First I/O port of the PM1a event block (status, then enable: 4 bytes).
    pub pm1a_evt: u16,
    /// I/O port of the PM1a control register (2 bytes).
    pub pm1a_cnt: u16,
    /// The SLP_TYP value of `\_S5` (soft off): what the PM1a control
    /// register takes as S5.
    pub slp_typ_s5: u8,
}

/// Writes the tables for `machine` at [`layout::ACPI_ADDR`] and returns the
/// RSDP's address (for `boot_params.acpi_rsdp_addr` and
/// `hvm_start_info.rsdp_paddr`).
pub fn write(mem: &GuestMemoryMmap, machine: &Machine) -> Result<u64> {
    for (addr, bytes) in tables(machine)? {
        mem.write_slice(&bytes, GuestAddress(addr))
            .map_err(|source| Error::GuestMemory { addr, source })?;
    }
    Ok(layout::ACPI_ADDR)
}

fn aml_bytes(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

fn align16(addr: u64) -> u64 {
    addr.next_multiple_of(16)
}

/// Every table and the address it goes to, RSDP first.
pub fn tables(machine: &Machine) -> Result<Vec<(u64, Vec<u8>)>> {
    let dsdt = dsdt(machine);
    let madt = madt(machine);
    let facs = aml_bytes(&acpi_tables::facs::FACS::new());
    // Fixed places for the small tables; the FACS must be 64-byte aligned.
    let rsdp_at = layout::ACPI_ADDR;
    let xsdt_at = rsdp_at + 0x40;
    let facs_at = rsdp_at + 0x80;
    let fadt_at = facs_at + facs.len() as u64;
    let madt_at = align16(fadt_at + acpi_tables::fadt::FADT::len() as u64);
    let dsdt_at = align16(madt_at + madt.len() as u64);
    if dsdt_at + dsdt.len() as u64 > ACPI_END {
        return Err(Error::Unsupported("ACPI tables do not fit below 1 MiB"));
    }
    let fadt = fadt(machine, dsdt_at, facs_at);
    let mut xsdt = XSDT::new(OEM_ID, *b"UKVMXSDT", 1);
    xsdt.add_entry(fadt_at);
    xsdt.add_entry(madt_at);
    Ok(vec![
        (rsdp_at, aml_bytes(&Rsdp::new(OEM_ID, xsdt_at))),
        (xsdt_at, aml_bytes(&xsdt)),
        (facs_at, facs),
        (fadt_at, fadt),
        (madt_at, madt),
        (dsdt_at, dsdt),
    ])
}

/// A System I/O generic address of a `bytes`-long register block.
fn io_gas(port: u16, bytes: u8) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        bytes * 8,
        0,
        AccessSize::Undefined,
        u64::from(port),
    )
}

fn fadt(machine: &Machine, dsdt_at: u64, facs_at: u64) -> Vec<u8> {
    let mut f = FADTBuilder::new(OEM_ID, *b"UKVMFACP", 1)
        .dsdt_64(dsdt_at)
        .firmware_ctrl_64(facs_at)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        // No fixed power or sleep button.
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    f.sci_int = u16::from(machine.sci_irq).into();
    // smi_cmd stays 0: the machine is in ACPI mode from the start.
    f.pm1a_evt_blk = u32::from(machine.pm1a_evt).into();
    f.pm1_evt_len = 4;
    f.x_pm1a_evt_blk = io_gas(machine.pm1a_evt, 4);
    f.pm1a_cnt_blk = u32::from(machine.pm1a_cnt).into();
    f.pm1_cnt_len = 2;
    f.x_pm1a_cnt_blk = io_gas(machine.pm1a_cnt, 2);
    f.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    aml_bytes(&f.finalize())
}

/// The distinct lines PCI devices use, plus the SCI: all level, active low.
fn level_irqs(machine: &Machine) -> Vec<u8> {
    let mut irqs: Vec<u8> = machine.pci_irqs.iter().map(|&(_, irq)| irq).collect();
    irqs.push(machine.sci_irq);
    irqs.sort_unstable();
    irqs.dedup();
    irqs
}

/// MADT interrupt source override (type 2) for ISA `irq`.
fn source_override(irq: u8, gsi: u32, flags: u16) -> Vec<u8> {
    let mut s = vec![2, 10, 0, irq];
    s.extend_from_slice(&gsi.to_le_bytes());
    s.extend_from_slice(&flags.to_le_bytes());
    s
}

fn madt(machine: &Machine) -> Vec<u8> {
    // acpi_tables' MADT type has no interrupt source overrides and no flags
    // setter: build it on the generic SDT with the crate's APIC structures.
    let mut t = Sdt::new(*b"APIC", 44, 5, OEM_ID, *b"UKVMAPIC", 1);
    t.write_u32(36, LAPIC_ADDR);
    t.write_u32(40, MADT_PCAT_COMPAT);
    t.append_slice(&aml_bytes(&ProcessorLocalApic::new(
        0,
        0,
        EnabledStatus::Enabled,
    )));
    t.append_slice(&aml_bytes(&IoApic::new(0, IOAPIC_ADDR, 0)));
    t.append_slice(&source_override(TIMER_IRQ, TIMER_GSI, MPS_CONFORMING));
    for irq in level_irqs(machine) {
        t.append_slice(&source_override(irq, u32::from(irq), MPS_LEVEL_LOW));
    }
    // Local APIC NMI (type 4): all processors, conforming flags, LINT1.
    t.append_slice(&[4, 6, 0xff, 0, 0, 1]);
    t.as_slice().to_vec()
}

fn dsdt(machine: &Machine) -> Vec<u8> {
    let mut t = Sdt::new(*b"DSDT", 36, 2, OEM_ID, *b"UKVMDSDT", 1);
    t.append_slice(&aml_bytes(&aml::Scope::new(
        "\\_SB_".into(),
        vec![&pci_host_bridge(machine)],
    )));
    let typ = machine.slp_typ_s5;
    let s5 = aml::Package::new(vec![&typ, &typ, &0u8, &0u8]);
    t.append_slice(&aml_bytes(&aml::Name::new("_S5_".into(), &s5)));
    t.as_slice().to_vec()
}

/// `_PRT` entry: INTA of `slot` is hard-wired to GSI `irq`.
struct PrtEntry {
    address: u32,
    irq: u8,
}

impl Aml for PrtEntry {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        // Address (slot << 16 | 0xFFFF: any function), pin 0 (INTA),
        // source 0 (a GSI, not a link device), source index = the GSI.
        aml::Package::new(vec![&self.address, &0u8, &0u8, &self.irq]).to_aml_bytes(sink);
    }
}

fn pci_host_bridge(machine: &Machine) -> Raw {
    let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0A03"));
    let adr = aml::Name::new("_ADR".into(), &aml::ZERO);
    let uid = aml::Name::new("_UID".into(), &aml::ZERO);
    let seg = aml::Name::new("_SEG".into(), &aml::ZERO);
    let bbn = aml::Name::new("_BBN".into(), &aml::ZERO);
    let crs = aml::Name::new(
        "_CRS".into(),
        &aml::ResourceTemplate::new(vec![
            &aml::AddressSpace::new_bus_number(0u16, 0xffu16),
            // The configuration ports, then all other ports, for BARs.
            &aml::IO::new(0xcf8, 0xcf8, 1, 8),
            &aml::AddressSpace::new_io(0u16, 0xcf7u16, None),
            &aml::AddressSpace::new_io(0xd00u16, 0xffffu16, None),
            // The MMIO hole up to the IOAPIC.
            &aml::AddressSpace::new_memory(
                aml::AddressSpaceCacheable::NotCacheable,
                true,
                layout::MMIO_HOLE_START as u32,
                IOAPIC_ADDR - 1,
                None,
            ),
        ]),
    );
    let entries: Vec<PrtEntry> = machine
        .pci_irqs
        .iter()
        .map(|&(slot, irq)| PrtEntry {
            address: (u32::from(slot) << 16) | 0xffff,
            irq,
        })
        .collect();
    let prt_children: Vec<&dyn Aml> = entries.iter().map(|e| e as &dyn Aml).collect();
    let prt = aml::Name::new("_PRT".into(), &aml::Package::new(prt_children));
    // A Device borrows its children: serialise it here.
    Raw(aml_bytes(&aml::Device::new(
        "PCI0".into(),
        vec![&hid, &adr, &uid, &seg, &bbn, &crs, &prt],
    )))
}

/// AML that is already serialised.
struct Raw(Vec<u8>);

impl Aml for Raw {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            pci_irqs: (1..32u8)
                .map(|s| (s, [10, 11, 9, 5][(s as usize - 1) % 4]))
                .collect(),
            sci_irq: 9,
            pm1a_evt: 0x600,
            pm1a_cnt: 0x604,
            slp_typ_s5: 0,
        }
    }

    fn le32(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn le64(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    /// The table at `addr`, by signature check.
    fn table<'a>(all: &'a [(u64, Vec<u8>)], addr: u64, sig: &[u8; 4]) -> &'a [u8] {
        let (_, t) = all
            .iter()
            .find(|(a, _)| *a == addr)
            .expect("no table there");
        assert_eq!(&t[..4], sig);
        t
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    #[test]
    fn every_table_is_checksummed_and_linked_from_the_rsdp() {
        let all = tables(&machine()).unwrap();
        let (rsdp_at, rsdp) = &all[0];
        assert_eq!(*rsdp_at, layout::ACPI_ADDR);
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(rsdp[15], 2, "revision 2: XSDT");
        assert_eq!(sum(&rsdp[..20]), 0, "ACPI 1.0 checksum");
        assert_eq!((sum(rsdp), rsdp.len()), (0, 36), "extended checksum");
        for (addr, t) in &all[1..] {
            assert_eq!(le32(t, 4) as usize, t.len(), "{addr:#x} length");
            if &t[..4] != b"FACS" {
                assert_eq!(sum(t), 0, "{} checksum", String::from_utf8_lossy(&t[..4]));
            }
            assert!(addr + t.len() as u64 <= layout::HIGH_MEM_START);
        }
        let xsdt = table(&all, le64(rsdp, 24), b"XSDT");
        assert_eq!(xsdt.len(), 36 + 16);
        let fadt = table(&all, le64(xsdt, 36), b"FACP");
        table(&all, le64(xsdt, 44), b"APIC");
        let facs_at = le64(fadt, 132);
        assert_eq!(facs_at % 64, 0, "FACS alignment");
        table(&all, facs_at, b"FACS");
        table(&all, le64(fadt, 140), b"DSDT");
        // No two tables overlap.
        let mut spans: Vec<_> = all.iter().map(|(a, t)| (*a, a + t.len() as u64)).collect();
        spans.sort();
        assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "{spans:x?}");
    }

    #[test]
    fn fadt_has_pm1_blocks_and_sci_and_is_not_hardware_reduced() {
        let all = tables(&machine()).unwrap();
        let (_, fadt) = all.iter().find(|(_, t)| &t[..4] == b"FACP").unwrap();
        assert_eq!(u16::from_le_bytes([fadt[46], fadt[47]]), 9, "SCI_INT");
        assert_eq!(le32(fadt, 48), 0, "SMI_CMD: already in ACPI mode");
        assert_eq!((le32(fadt, 56), fadt[88]), (0x600, 4), "PM1a_EVT_BLK");
        assert_eq!((le32(fadt, 64), fadt[89]), (0x604, 2), "PM1a_CNT_BLK");
        assert_eq!(le32(fadt, 76), 0, "no PM timer");
        assert_eq!(le32(fadt, 112) & (1 << 20), 0, "HW_REDUCED_ACPI clear");
        assert_eq!(
            u16::from_le_bytes([fadt[109], fadt[110]]),
            0xf,
            "IAPC_BOOT_ARCH"
        );
        // X_PM1a_EVT_BLK / X_PM1a_CNT_BLK: System I/O, 32 and 16 bits wide.
        assert_eq!((fadt[148], fadt[149], le64(fadt, 152)), (1, 32, 0x600));
        assert_eq!((fadt[172], fadt[173], le64(fadt, 176)), (1, 16, 0x604));
    }

    /// MADT interrupt controller structures as (type, bytes).
    fn madt_entries(madt: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 44;
        while at < madt.len() {
            let len = madt[at + 1] as usize;
            assert!(len >= 2, "zero-length MADT entry");
            out.push((madt[at], madt[at..at + len].to_vec()));
            at += len;
        }
        assert_eq!(at, madt.len());
        out
    }

    #[test]
    fn madt_has_one_cpu_the_ioapic_and_the_overrides() {
        let all = tables(&machine()).unwrap();
        let (_, madt) = all.iter().find(|(_, t)| &t[..4] == b"APIC").unwrap();
        assert_eq!(le32(madt, 36), 0xfee0_0000, "local APIC address");
        assert_eq!(le32(madt, 40), 1, "PCAT_COMPAT");
        let entries = madt_entries(madt);
        let lapics: Vec<_> = entries.iter().filter(|(t, _)| *t == 0).collect();
        assert_eq!(lapics.len(), 1);
        assert_eq!(
            lapics[0].1,
            [0, 8, 0, 0, 1, 0, 0, 0],
            "UID 0, APIC ID 0, enabled"
        );
        let ioapic: Vec<_> = entries.iter().filter(|(t, _)| *t == 1).collect();
        assert_eq!(ioapic.len(), 1);
        assert_eq!(le32(&ioapic[0].1, 4), 0xfec0_0000);
        assert_eq!(le32(&ioapic[0].1, 8), 0, "GSI base");
        let overrides: Vec<(u8, u32, u16)> = entries
            .iter()
            .filter(|(t, _)| *t == 2)
            .map(|(_, e)| (e[3], le32(e, 4), u16::from_le_bytes([e[8], e[9]])))
            .collect();
        assert_eq!(
            overrides,
            [
                (0, 2, 0),
                (5, 5, 0xf),
                (9, 9, 0xf),
                (10, 10, 0xf),
                (11, 11, 0xf)
            ]
        );
        assert!(
            entries.iter().any(|(t, e)| *t == 4 && e[5] == 1),
            "LINT1 NMI"
        );
    }

    #[test]
    fn dsdt_routes_every_slot_and_has_s5() {
        let m = machine();
        let all = tables(&m).unwrap();
        let (_, dsdt) = all.iter().find(|(_, t)| &t[..4] == b"DSDT").unwrap();
        assert!(find(dsdt, b"PCI0").is_some());
        // EisaId("PNP0A03") as a DWord.
        assert!(find(
            dsdt,
            &[0x08, b'_', b'H', b'I', b'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03]
        )
        .is_some());
        let prt = find(dsdt, b"_PRT").expect("_PRT");
        // Package of 31 entries follows the name.
        assert_eq!(dsdt[prt + 4], 0x12);
        for &(slot, irq) in &m.pci_irqs {
            // Package(4) { 0xSSSSFFFF, 0 (INTA), 0 (GSI), irq }
            let entry = [0x12, 0x0b, 0x04, 0x0c, 0xff, 0xff, slot, 0, 0, 0, 0x0a, irq];
            let at = find(&dsdt[prt..], &entry);
            assert!(at.is_some(), "slot {slot} -> IRQ {irq} missing from _PRT");
        }
        assert_eq!(m.pci_irqs.len(), 31);
        // Name(_S5_, Package(4) { 0, 0, 0, 0 }): PIIX4's S5, as in QEMU's DSDT.
        assert!(find(
            dsdt,
            &[0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0, 0, 0, 0]
        )
        .is_some());
        // _CRS windows: bus 0-255, config ports, the MMIO hole below the IOAPIC.
        assert!(find(dsdt, &[0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08]).is_some());
        let mem = find(dsdt, &0xc000_0000u32.to_le_bytes()).unwrap();
        assert_eq!(le32(dsdt, mem + 4), 0xfebf_ffff);
    }

    #[test]
    fn tables_land_in_guest_memory() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let rsdp = write(&mem, &machine()).unwrap();
        assert_eq!(rsdp, 0xe_0000);
        let mut sig = [0u8; 8];
        mem.read_slice(&mut sig, GuestAddress(rsdp)).unwrap();
        assert_eq!(&sig, b"RSD PTR ");
    }
}
