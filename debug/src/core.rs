//! ELF core files of a guest, as solo5-hvt-debug's `--dumpcore` writes
//! them: `gdb KERNEL CORE` shows the registers (one NT_PRSTATUS note),
//! the backtrace and memory. Memory goes in as PT_LOAD segments at the
//! guest's *virtual* addresses, from a walk of its page tables (paging
//! off: linear = physical), so a kernel linked at high addresses reads
//! back at the addresses its symbols name.
//!
//! A 64-bit core (EM_X86_64) for 64-bit kernels, a 32-bit one (EM_386)
//! for 32-bit kernels: gdb takes the executable's architecture and wants
//! a core of the same class.

use crate::regs::CpuState;
use std::io::{Seek, SeekFrom, Write};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// One virtually contiguous, physically contiguous piece of guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Guest virtual (linear) address.
    pub vaddr: u64,
    /// Guest physical address.
    pub paddr: u64,
    /// Length in bytes.
    pub len: u64,
}

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const EFER_LMA: u64 = 1 << 10;
const PTE_P: u64 = 1;
const PTE_PS: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// Entries beyond this many mappings are dropped (a pathological guest).
const MAX_MAPPINGS: usize = 1 << 16;

/// How the guest's page tables are laid out.
struct Paging {
    /// Entry size in bytes (4 or 8).
    entry: u64,
    /// Address bits each level resolves, top level first.
    bits: &'static [u32],
    /// Levels (counted from the top, 0-based) where PS maps a large page.
    large: &'static [usize],
    /// Sign-extend bit 47 (long mode).
    canonical: bool,
}

/// The guest's mappings of RAM, coalesced, in virtual address order.
pub fn mappings(mem: &GuestMemoryMmap, sregs: &kvm_bindings::kvm_sregs) -> Vec<Mapping> {
    if sregs.cr0 & CR0_PG == 0 {
        return mem
            .iter()
            .map(|r| Mapping {
                vaddr: r.start_addr().0,
                paddr: r.start_addr().0,
                len: r.len(),
            })
            .collect();
    }
    let paging = if sregs.efer & EFER_LMA != 0 {
        Paging {
            entry: 8,
            bits: &[39, 30, 21, 12],
            large: &[1, 2],
            canonical: true,
        }
    } else if sregs.cr4 & CR4_PAE != 0 {
        Paging {
            entry: 8,
            bits: &[30, 21, 12],
            large: &[1],
            canonical: false,
        }
    } else {
        Paging {
            entry: 4,
            bits: &[22, 12],
            large: if sregs.cr4 & CR4_PSE != 0 { &[0] } else { &[] },
            canonical: false,
        }
    };
    let mut out: Vec<Mapping> = Vec::new();
    walk(mem, &paging, sregs.cr3 & ADDR_MASK & !0x1F, 0, 0, &mut out);
    out
}

fn walk(
    mem: &GuestMemoryMmap,
    p: &Paging,
    table: u64,
    level: usize,
    va: u64,
    out: &mut Vec<Mapping>,
) {
    let shift = p.bits[level];
    let entries: u64 = if p.entry == 4 {
        1024
    } else if level == 0 && p.bits.len() == 3 {
        4 // PAE's page-directory-pointer table
    } else {
        512
    };
    for i in 0..entries {
        if out.len() >= MAX_MAPPINGS {
            return;
        }
        let e = if p.entry == 4 {
            mem.read_obj::<u32>(GuestAddress(table + i * 4))
                .map(u64::from)
        } else {
            mem.read_obj::<u64>(GuestAddress(table + i * 8))
        };
        let Ok(e) = e else { return };
        if e & PTE_P == 0 {
            continue;
        }
        let mut vaddr = va | (i << shift);
        if p.canonical && vaddr & (1 << 47) != 0 {
            vaddr |= 0xFFFF_0000_0000_0000;
        }
        let last = level + 1 == p.bits.len();
        if last || (p.large.contains(&level) && e & PTE_PS != 0) {
            let size = 1u64 << shift;
            let paddr = if p.entry == 4 && !last {
                e & 0xFFC0_0000 // 4 MiB page (PSE-36 high bits ignored)
            } else {
                e & ADDR_MASK & !(size - 1)
            };
            push(mem, out, vaddr, paddr, size);
        } else {
            let next = if p.entry == 4 {
                e & 0xFFFF_F000
            } else {
                e & ADDR_MASK
            };
            walk(mem, p, next, level + 1, vaddr, out);
        }
    }
}

/// Adds a page's mapping if it is RAM, merging with the previous one when
/// both addresses continue it.
fn push(mem: &GuestMemoryMmap, out: &mut Vec<Mapping>, vaddr: u64, paddr: u64, len: u64) {
    if !mem.address_in_range(GuestAddress(paddr))
        || !mem.address_in_range(GuestAddress(paddr + len - 1))
    {
        return;
    }
    if let Some(prev) = out.last_mut() {
        if prev.vaddr.wrapping_add(prev.len) == vaddr && prev.paddr + prev.len == paddr {
            prev.len += len;
            return;
        }
    }
    out.push(Mapping { vaddr, paddr, len });
}

/// ELF class of a core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// ELF32, EM_386.
    Elf32,
    /// ELF64, EM_X86_64.
    Elf64,
}

/// `struct elf_prstatus` for x86-64 (336 bytes) or i386 (144 bytes), with
/// the registers in `user_regs_struct` order.
fn prstatus(class: Class, st: &CpuState, signal: u16) -> Vec<u8> {
    let r = &st.regs;
    let s = &st.sregs;
    let mut out = Vec::new();
    // pr_info.si_signo, si_code, si_errno; pr_cursig and padding.
    out.extend_from_slice(&i32::from(signal).to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&signal.to_le_bytes());
    out.extend_from_slice(&[0; 2]);
    match class {
        Class::Elf64 => {
            // sigpend, sighold (8 each), pid/ppid/pgrp/sid (4 each), four
            // timevals (16 each): registers start at offset 112.
            out.resize(112, 0);
            let seg = |sel: u16| u64::from(sel);
            for v in [
                r.r15,
                r.r14,
                r.r13,
                r.r12,
                r.rbp,
                r.rbx,
                r.r11,
                r.r10,
                r.r9,
                r.r8,
                r.rax,
                r.rcx,
                r.rdx,
                r.rsi,
                r.rdi,
                u64::MAX,
                r.rip,
                seg(s.cs.selector),
                r.rflags,
                r.rsp,
                seg(s.ss.selector),
                s.fs.base,
                s.gs.base,
                seg(s.ds.selector),
                seg(s.es.selector),
                seg(s.fs.selector),
                seg(s.gs.selector),
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.resize(336, 0);
        }
        Class::Elf32 => {
            // sigpend, sighold (4 each), pid..sid, four 8-byte timevals:
            // registers start at offset 72.
            out.resize(72, 0);
            let seg = |sel: u16| u32::from(sel);
            for v in [
                r.rbx as u32,
                r.rcx as u32,
                r.rdx as u32,
                r.rsi as u32,
                r.rdi as u32,
                r.rbp as u32,
                r.rax as u32,
                seg(s.ds.selector),
                seg(s.es.selector),
                seg(s.fs.selector),
                seg(s.gs.selector),
                u32::MAX,
                r.rip as u32,
                seg(s.cs.selector),
                r.rflags as u32,
                r.rsp as u32,
                seg(s.ss.selector),
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.resize(144, 0);
        }
    }
    out
}

/// An ELF note: namesz, descsz, type, "CORE\0" padded to 4, desc padded.
fn note(kind: u32, desc: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&5u32.to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(b"CORE\0\0\0\0");
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

const NT_PRSTATUS: u32 = 1;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PF_RWX: u32 = 7;

/// The core file's bytes before the memory: ELF header, program headers,
/// notes. Returns them and each mapping's file offset.
fn headers(class: Class, notes: &[u8], maps: &[Mapping]) -> (Vec<u8>, Vec<u64>) {
    let (ehsize, phentsize) = match class {
        Class::Elf64 => (64u64, 56u64),
        Class::Elf32 => (52, 32),
    };
    let phnum = 1 + maps.len() as u64;
    let notes_off = ehsize + phnum * phentsize;
    let mut offset = (notes_off + notes.len() as u64).next_multiple_of(4096);
    let offsets: Vec<u64> = maps
        .iter()
        .map(|m| {
            let o = offset;
            offset += m.len;
            o
        })
        .collect();
    let mut h = Vec::new();
    let elf64 = class == Class::Elf64;
    h.extend_from_slice(b"\x7fELF");
    h.extend_from_slice(&[if elf64 { 2 } else { 1 }, 1, 1, 0]);
    h.resize(16, 0);
    h.extend_from_slice(&4u16.to_le_bytes()); // ET_CORE
    h.extend_from_slice(&(if elf64 { 62u16 } else { 3 }).to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    let word = |h: &mut Vec<u8>, v: u64| {
        if elf64 {
            h.extend_from_slice(&v.to_le_bytes())
        } else {
            h.extend_from_slice(&(v as u32).to_le_bytes())
        }
    };
    word(&mut h, 0); // e_entry
    word(&mut h, ehsize); // e_phoff
    word(&mut h, 0); // e_shoff
    h.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for v in [ehsize, phentsize, phnum, 0, 0, 0] {
        h.extend_from_slice(&(v as u16).to_le_bytes());
    }
    let mut phdr = |kind: u32, off: u64, vaddr: u64, paddr: u64, size: u64, align: u64| {
        h.extend_from_slice(&kind.to_le_bytes());
        if elf64 {
            h.extend_from_slice(&PF_RWX.to_le_bytes());
        }
        for v in [off, vaddr, paddr, size, size] {
            word(&mut h, v);
        }
        if !elf64 {
            h.extend_from_slice(&PF_RWX.to_le_bytes());
        }
        word(&mut h, align);
    };
    phdr(PT_NOTE, notes_off, 0, 0, notes.len() as u64, 4);
    for (m, off) in maps.iter().zip(&offsets) {
        phdr(PT_LOAD, *off, m.vaddr, m.paddr, m.len, 4096);
    }
    h.extend_from_slice(notes);
    (h, offsets)
}

/// Writes `out` as the core of a guest stopped with `state`. Pages of
/// zeros are skipped with a seek, so the file is sparse: on disk it takes
/// about what the guest touched.
pub fn write<W: Write + Seek>(
    out: &mut W,
    mem: &GuestMemoryMmap,
    state: &CpuState,
    class: Class,
    signal: u16,
) -> std::io::Result<()> {
    let mut maps = mappings(mem, &state.sregs);
    if class == Class::Elf32 {
        maps.retain(|m| m.vaddr < 1 << 32);
    }
    let notes = note(NT_PRSTATUS, &prstatus(class, state, signal));
    let (head, offsets) = headers(class, &notes, &maps);
    out.write_all(&head)?;
    let mut end = head.len() as u64;
    let mut page = [0u8; 4096];
    for (m, off) in maps.iter().zip(offsets) {
        let mut done = 0;
        while done < m.len {
            let n = (m.len - done).min(page.len() as u64) as usize;
            mem.read_slice(&mut page[..n], GuestAddress(m.paddr + done))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if page[..n].iter().any(|&b| b != 0) {
                out.seek(SeekFrom::Start(off + done))?;
                out.write_all(&page[..n])?;
            }
            done += n as u64;
        }
        end = off + m.len;
    }
    // A trailing hole still counts in the file's length.
    let len = out.seek(SeekFrom::End(0))?;
    if len < end {
        out.seek(SeekFrom::Start(end - 1))?;
        out.write_all(&[0])?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(mib: usize) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), mib << 20)]).unwrap()
    }

    #[test]
    fn paging_off_maps_ram_one_to_one() {
        let m = mem(2);
        let sregs = kvm_bindings::kvm_sregs::default();
        assert_eq!(
            mappings(&m, &sregs),
            vec![Mapping {
                vaddr: 0,
                paddr: 0,
                len: 2 << 20
            }]
        );
    }

    #[test]
    fn long_mode_tables_give_virtual_ranges() {
        let m = mem(4);
        // PML4 at 0x1000: entry 0 -> PDPT 0x2000, entry 511 -> PDPT 0x3000.
        m.write_obj(0x2003u64, GuestAddress(0x1000)).unwrap();
        m.write_obj(0x3003u64, GuestAddress(0x1000 + 511 * 8))
            .unwrap();
        // Low PDPT entry 0 -> PD 0x4000: two 2 MiB pages, identity.
        m.write_obj(0x4003u64, GuestAddress(0x2000)).unwrap();
        m.write_obj(0x83u64, GuestAddress(0x4000)).unwrap();
        m.write_obj(0x20_0083u64, GuestAddress(0x4008)).unwrap();
        // High PDPT entry 510 -> PD 0x5000 -> PT 0x6000: one 4 KiB page at
        // 0xffffffff80000000 -> 0x10_0000; a page outside RAM is left out.
        m.write_obj(0x5003u64, GuestAddress(0x3000 + 510 * 8))
            .unwrap();
        m.write_obj(0x6003u64, GuestAddress(0x5000)).unwrap();
        m.write_obj(0x10_0003u64, GuestAddress(0x6000)).unwrap();
        m.write_obj(0x4000_0003u64, GuestAddress(0x6008)).unwrap();
        let sregs = kvm_bindings::kvm_sregs {
            cr0: CR0_PG | 1,
            cr3: 0x1000,
            cr4: CR4_PAE,
            efer: EFER_LMA | (1 << 8),
            ..Default::default()
        };
        assert_eq!(
            mappings(&m, &sregs),
            vec![
                Mapping {
                    vaddr: 0,
                    paddr: 0,
                    len: 4 << 20
                },
                Mapping {
                    vaddr: 0xFFFF_FFFF_8000_0000,
                    paddr: 0x10_0000,
                    len: 0x1000
                },
            ]
        );
    }

    #[test]
    fn core_layout_is_what_readelf_expects() {
        let m = mem(2);
        m.write_obj(0xDEAD_BEEFu32, GuestAddress(0x1234)).unwrap();
        let mut st = CpuState::default();
        st.regs.rip = 0x10_0020;
        let mut cur = std::io::Cursor::new(Vec::new());
        write(&mut cur, &m, &st, Class::Elf64, 11).unwrap();
        let out = cur.into_inner();
        assert_eq!(&out[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([out[16], out[17]]), 4, "ET_CORE");
        assert_eq!(
            u16::from_le_bytes([out[56], out[57]]),
            2,
            "two program headers"
        );
        // The PT_LOAD's data starts page-aligned; guest byte 0x1234 is there.
        let off = u64::from_le_bytes(out[64 + 56 + 8..64 + 56 + 16].try_into().unwrap()) as usize;
        assert_eq!(off % 4096, 0);
        assert_eq!(
            &out[off + 0x1234..off + 0x1238],
            &0xDEAD_BEEFu32.to_le_bytes()
        );
        assert_eq!(out.len(), off + (2 << 20));
        // RIP sits at pr_reg + 16 * 8 in the note's descriptor.
        let desc = 64 + 2 * 56 + 20;
        let rip = u64::from_le_bytes(out[desc + 112 + 128..desc + 112 + 136].try_into().unwrap());
        assert_eq!(rip, 0x10_0020);
        let mut cur = std::io::Cursor::new(Vec::new());
        write(&mut cur, &m, &st, Class::Elf32, 11).unwrap();
        let out32 = cur.into_inner();
        assert_eq!(out32[4], 1, "ELFCLASS32");
        assert_eq!(u16::from_le_bytes([out32[18], out32[19]]), 3, "EM_386");
    }
}
