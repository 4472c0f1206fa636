//! The XSAVE area: header offsets, which state components the executor
//! carries, and where components live in the standard and the compacted
//! format (SDM Vol. 1, 13.4).
//!
//! Offsets and sizes come from the host CPU's CPUID leaf 0xD: the guest's
//! instruction runs on the host, so the host's layout is the one that
//! applies, and KVM reports the host's leaf 0xD sub-leaves to the guest
//! unchanged (only the component bitmap is filtered).

use std::sync::OnceLock;

/// MXCSR in the legacy region.
pub const MXCSR: usize = 24;
/// The header: XSTATE_BV, then XCOMP_BV, then 48 reserved bytes.
pub const XSTATE_BV: usize = 512;
/// XCOMP_BV: bit 63 set means the area is in compacted format.
pub const XCOMP_BV: usize = 520;
/// End of the header: where the extended region starts.
pub const HEADER_END: usize = 576;
/// XCOMP_BV bit 63: compacted format.
pub const COMPACTED: u64 = 1 << 63;
/// x87 and SSE: their state lives in the legacy region.
pub const LEGACY: u64 = 0b11;

/// Components the executor moves between KVM's XSAVE area and the host
/// CPU: x87, SSE, AVX, and AVX-512's opmask, ZMM_Hi256 and Hi16_ZMM (all
/// inside the 4 KiB KVM_GET_XSAVE area). Not PKRU: the guest's protection
/// keys loaded on the host would govern the monitor's own memory accesses
/// for the duration of the stub. Not MPX (gone from current CPUs) nor AMX
/// (its tile data does not fit the 4 KiB area).
pub const CARRIED: u64 = 0b1110_0111;

/// Highest component number this module lays out.
const LAST: usize = 7;

/// One extended component (number 2 and up) as CPUID 0xD reports it.
#[derive(Debug, Clone, Copy, Default)]
struct Component {
    /// Size in bytes; 0 when the host does not have the component.
    size: usize,
    /// Offset in the standard format.
    offset: usize,
    /// Aligned to 64 bytes in the compacted format.
    align64: bool,
}

/// The host's layout of components 2..=LAST, read once (CPUID can trap to
/// a hypervisor, so it is not repeated per instruction).
fn layout() -> &'static [Component; LAST + 1] {
    static LAYOUT: OnceLock<[Component; LAST + 1]> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let mut table = [Component::default(); LAST + 1];
        // Leaf 0xD sub-leaves are read only if leaf 0 says they exist.
        let max_leaf = std::arch::x86_64::__cpuid(0).eax;
        if max_leaf < 0xD {
            return table;
        }
        for (i, c) in table.iter_mut().enumerate().skip(2) {
            let r = std::arch::x86_64::__cpuid_count(0xD, i as u32);
            *c = Component {
                size: r.eax as usize,
                offset: r.ebx as usize,
                align64: r.ecx & 0b10 != 0,
            };
        }
        table
    })
}

/// Bytes an XSAVE/XRSTOR in standard format touches for the components in
/// `bits`: the legacy region and header, up to the end of the highest
/// component. `None` if a component is unknown to the host.
pub fn standard_size(bits: u64) -> Option<usize> {
    let mut end = HEADER_END;
    for i in extended(bits) {
        let c = layout().get(i).filter(|c| c.size != 0)?;
        end = end.max(c.offset + c.size);
    }
    Some(end)
}

/// Size of a compacted area holding the components in `bits` (bit 63, the
/// format bit, ignored): components follow the header in number order,
/// each aligned to 64 bytes if CPUID says so. `None` if a component is
/// unknown.
pub fn compacted_size(bits: u64) -> Option<usize> {
    let mut end = HEADER_END;
    for i in extended(bits) {
        let c = layout().get(i).filter(|c| c.size != 0)?;
        if c.align64 {
            end = end.next_multiple_of(64);
        }
        end += c.size;
    }
    Some(end)
}

/// Offset of component `i` in a compacted area holding `bits`.
#[cfg(test)]
pub fn compacted_offset(bits: u64, i: usize) -> Option<usize> {
    let before = bits & ((1u64 << i) - 1);
    let c = layout().get(i).filter(|c| c.size != 0)?;
    let end = compacted_size(before)?;
    Some(if c.align64 {
        end.next_multiple_of(64)
    } else {
        end
    })
}

/// Offset of component `i` (2 and up) in the standard format.
#[cfg(test)]
pub fn standard_offset(i: usize) -> Option<usize> {
    layout().get(i).filter(|c| c.size != 0).map(|c| c.offset)
}

/// The extended components (2 to 62) in `bits`; anything past the last
/// one laid out here is reported as that number, so the callers see it as
/// unknown.
fn extended(bits: u64) -> impl Iterator<Item = usize> {
    (2..63)
        .filter(move |i| bits & (1 << i) != 0)
        .map(|i| i.min(LAST + 1))
}

/// The host CPU has XSAVEC, and with it the compacted format for XRSTOR
/// (CPUID.(EAX=0DH,ECX=1):EAX bit 1).
pub fn host_compacts() -> bool {
    static COMPACTS: OnceLock<bool> = OnceLock::new();
    *COMPACTS.get_or_init(|| {
        std::arch::x86_64::__cpuid(0).eax >= 0xD
            && std::arch::x86_64::__cpuid_count(0xD, 1).eax & 0b10 != 0
    })
}
