//! Guest linear-to-physical translation through the guest's own page tables,
//! with the permission checks and accessed/dirty updates the MMU would do,
//! and reads/writes of guest linear ranges that may cross pages.

use crate::Fault;
use kvm_bindings::kvm_sregs;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

const CR0_PG: u64 = 1 << 31;
const CR0_WP: u64 = 1 << 16;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;

const PTE_P: u64 = 1 << 0;
const PTE_RW: u64 = 1 << 1;
const PTE_US: u64 = 1 << 2;
const PTE_A: u64 = 1 << 5;
const PTE_D: u64 = 1 << 6;
const PTE_PS: u64 = 1 << 7;
/// Physical-address bits of a 64-bit entry (bits 51:12).
const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// #PF error-code bits.
const PF_PRESENT: u32 = 1 << 0;
const PF_WRITE: u32 = 1 << 1;
const PF_USER: u32 = 1 << 2;

/// Which paging structures the guest uses and with what privilege it runs:
/// everything the walk needs, taken from the special registers.
#[derive(Debug, Clone, Copy)]
pub struct Mmu {
    cr0: u64,
    cr3: u64,
    cr4: u64,
    efer: u64,
    cpl: u8,
}

/// A page-table walk's outcome for one page.
enum Walk {
    Mapped { gpa: u64, page_end: u64 },
    Fault(Fault),
}

impl Mmu {
    /// The MMU state the guest runs with now.
    pub fn from_sregs(sregs: &kvm_sregs) -> Mmu {
        Mmu {
            cr0: sregs.cr0,
            cr3: sregs.cr3,
            cr4: sregs.cr4,
            efer: sregs.efer,
            cpl: (sregs.cs.selector & 3) as u8,
        }
    }

    /// The current privilege level.
    pub fn cpl(&self) -> u8 {
        self.cpl
    }

    /// Translates one linear address for an access of the given kind,
    /// returning the guest-physical address and the end of its page (the
    /// first linear address past the page that holds `linear`).
    fn walk(&self, mem: &GuestMemoryMmap, linear: u64, write: bool) -> Result<Walk, Fault> {
        if self.cr0 & CR0_PG == 0 {
            let gpa = linear & 0xFFFF_FFFF;
            return Ok(Walk::Mapped {
                gpa,
                page_end: (linear | 0xFFF) + 1,
            });
        }
        let pf = |present: bool| {
            let mut code = if present { PF_PRESENT } else { 0 };
            if write {
                code |= PF_WRITE;
            }
            if self.cpl == 3 {
                code |= PF_USER;
            }
            Walk::Fault(Fault::Page {
                addr: linear,
                error_code: code,
            })
        };
        // Per level: (index shift, may map a large page here).
        let levels: &[(u32, bool)] = if self.efer & EFER_LMA != 0 {
            if self.cr4 & CR4_LA57 != 0 {
                return Err(Fault::Unsupported("5-level paging"));
            }
            if !is_canonical(linear) {
                return Ok(Walk::Fault(Fault::Gp(0)));
            }
            &[(39, false), (30, true), (21, true), (12, false)]
        } else if self.cr4 & CR4_PAE != 0 {
            &[(30, false), (21, true), (12, false)]
        } else {
            &[(22, self.cr4 & CR4_PSE != 0), (12, false)]
        };
        let wide = self.efer & EFER_LMA != 0 || self.cr4 & CR4_PAE != 0;
        let pae_pdpt = wide && self.efer & EFER_LMA == 0;
        let mut table = if pae_pdpt {
            self.cr3 & 0xFFFF_FFE0
        } else {
            self.cr3 & ADDR_MASK
        };
        let (mut rw, mut us) = (true, true);
        let mut touched: Vec<(u64, u64, bool)> = Vec::with_capacity(levels.len());
        for (depth, &(shift, large_ok)) in levels.iter().enumerate() {
            let index_bits = if wide { 9 } else { 10 };
            let index = (linear >> shift) & ((1 << index_bits) - 1);
            let (entry_size, index) = if pae_pdpt && depth == 0 {
                (8, (linear >> 30) & 3)
            } else {
                (if wide { 8 } else { 4 }, index)
            };
            let at = table + index * entry_size;
            let entry = read_entry(mem, at, entry_size)?;
            if entry & PTE_P == 0 {
                return Ok(pf(false));
            }
            // PAE PDPTEs carry no R/W or U/S bits.
            let permission_bits = !(pae_pdpt && depth == 0);
            if permission_bits {
                rw &= entry & PTE_RW != 0;
                us &= entry & PTE_US != 0;
            }
            let last = depth == levels.len() - 1;
            let large = !last && large_ok && entry & PTE_PS != 0;
            touched.push((at, entry, permission_bits));
            if last || large {
                if let Some(fault) = self.denied(rw, us, write) {
                    return Ok(pf(fault));
                }
                let page_mask = (1u64 << shift) - 1;
                let frame = if wide {
                    entry & ADDR_MASK & !page_mask
                } else {
                    entry & 0xFFFF_F000 & !page_mask
                };
                set_accessed(mem, &touched, entry_size, write)?;
                return Ok(Walk::Mapped {
                    gpa: frame | (linear & page_mask),
                    page_end: (linear | 0xFFF) + 1,
                });
            }
            table = if wide {
                entry & ADDR_MASK
            } else {
                entry & 0xFFFF_F000
            };
        }
        Err(Fault::Unsupported("page walk without a leaf"))
    }

    /// Whether the combined R/W and U/S bits forbid this access; `Some(true)`
    /// means a protection fault on a present page.
    fn denied(&self, rw: bool, us: bool, write: bool) -> Option<bool> {
        let user = self.cpl == 3;
        if user && !us {
            return Some(true);
        }
        // Supervisor writes ignore R/W unless CR0.WP is set.
        if write && !rw && (user || self.cr0 & CR0_WP != 0) {
            return Some(true);
        }
        None
    }

    /// Translates every page of `[linear, linear + len)` before anything is
    /// touched, so a fault on a later page leaves memory unchanged, as on
    /// hardware. Returns (guest-physical address, length) pieces.
    pub fn translate(
        &self,
        mem: &GuestMemoryMmap,
        linear: u64,
        len: usize,
        write: bool,
    ) -> Result<Vec<(u64, usize)>, Fault> {
        let mut pieces = Vec::new();
        let mut addr = linear;
        let mut left = len;
        while left > 0 {
            match self.walk(mem, addr, write)? {
                Walk::Fault(f) => return Err(f),
                Walk::Mapped { gpa, page_end } => {
                    let n = (page_end.wrapping_sub(addr) as usize).min(left);
                    if !mem.check_range(GuestAddress(gpa), n, Permissions::ReadWrite) {
                        return Err(Fault::OutsideMemory(gpa));
                    }
                    pieces.push((gpa, n));
                    addr = addr.wrapping_add(n as u64);
                    if !self.long_mode() {
                        addr &= 0xFFFF_FFFF;
                    }
                    left -= n;
                }
            }
        }
        Ok(pieces)
    }

    /// Whether the guest runs with long-mode paging.
    pub fn long_mode(&self) -> bool {
        self.efer & EFER_LMA != 0
    }

    /// Reads guest linear memory into `buf`.
    pub fn read(&self, mem: &GuestMemoryMmap, linear: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let pieces = self.translate(mem, linear, buf.len(), false)?;
        let mut off = 0;
        for (gpa, n) in pieces {
            mem.read_slice(&mut buf[off..off + n], GuestAddress(gpa))
                .map_err(|_| Fault::OutsideMemory(gpa))?;
            off += n;
        }
        Ok(())
    }

    /// Writes `buf` to guest linear memory, checking write permission on
    /// every page first.
    pub fn write(&self, mem: &GuestMemoryMmap, linear: u64, buf: &[u8]) -> Result<(), Fault> {
        let pieces = self.translate(mem, linear, buf.len(), true)?;
        let mut off = 0;
        for (gpa, n) in pieces {
            mem.write_slice(&buf[off..off + n], GuestAddress(gpa))
                .map_err(|_| Fault::OutsideMemory(gpa))?;
            off += n;
        }
        Ok(())
    }
}

fn is_canonical(addr: u64) -> bool {
    let top = (addr as i64) >> 47;
    top == 0 || top == -1
}

fn read_entry(mem: &GuestMemoryMmap, at: u64, size: u64) -> Result<u64, Fault> {
    let addr = GuestAddress(at);
    let value = if size == 8 {
        mem.read_obj::<u64>(addr)
    } else {
        mem.read_obj::<u32>(addr).map(u64::from)
    };
    value.map_err(|_| Fault::OutsideMemory(at))
}

/// Sets the accessed bits of the entries used, and the dirty bit of the leaf
/// for a write, as the MMU does (guests use them for page reclaim).
fn set_accessed(
    mem: &GuestMemoryMmap,
    touched: &[(u64, u64, bool)],
    size: u64,
    write: bool,
) -> Result<(), Fault> {
    for (i, &(at, entry, has_bits)) in touched.iter().enumerate() {
        if !has_bits {
            continue;
        }
        let mut new = entry | PTE_A;
        if write && i == touched.len() - 1 {
            new |= PTE_D;
        }
        if new == entry {
            continue;
        }
        let addr = GuestAddress(at);
        let done = if size == 8 {
            mem.write_obj(new, addr)
        } else {
            mem.write_obj(new as u32, addr)
        };
        done.map_err(|_| Fault::OutsideMemory(at))?;
    }
    Ok(())
}
