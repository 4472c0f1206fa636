//! The CPUID table the guest sees: what KVM supports, plus what a unikernel
//! needs to skip calibrating its clock against the PIT: the hypervisor bit,
//! invariant TSC, KVM's paravirt leaves, and the TSC frequency in leaf
//! 0x40000010 (the VMware/KVM "timing information" leaf).

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

/// Leaf 1 ECX bit 31: running under a hypervisor.
pub const HYPERVISOR_BIT: u32 = 1 << 31;
/// Leaf 0x80000007 EDX bit 8: the TSC runs at a constant rate in all states.
pub const INVARIANT_TSC_BIT: u32 = 1 << 8;
/// First hypervisor leaf: signature and highest hypervisor leaf.
pub const HV_SIGNATURE_LEAF: u32 = 0x4000_0000;
/// Hypervisor timing leaf: EAX = TSC kHz, EBX = APIC bus kHz.
pub const HV_TIMING_LEAF: u32 = 0x4000_0010;
/// KVM's local APIC timer runs at 1 GHz.
pub const APIC_BUS_KHZ: u32 = 1_000_000;

/// Adapts KVM's supported CPUID table for vCPU `apic_id`. `tsc_khz` is the
/// guest TSC frequency (from `KVM_GET_TSC_KHZ`); without it leaf 0x40000010
/// is not published.
pub fn adapt(supported: &CpuId, apic_id: u8, tsc_khz: Option<u32>) -> CpuId {
    let mut entries: Vec<kvm_cpuid_entry2> = supported
        .as_slice()
        .iter()
        .filter(|e| e.function != HV_TIMING_LEAF)
        .copied()
        .collect();
    for entry in entries.iter_mut() {
        adapt_entry(entry, apic_id, tsc_khz.is_some());
    }
    if let Some(khz) = tsc_khz {
        entries.push(kvm_cpuid_entry2 {
            function: HV_TIMING_LEAF,
            eax: khz,
            ebx: APIC_BUS_KHZ,
            ..Default::default()
        });
    }
    // The table only shrinks or grows by one entry from what KVM returned,
    // and KVM returned at most KVM_MAX_CPUID_ENTRIES, so this cannot fail
    // short of a KVM bug; fall back to the unmodified table if it does.
    CpuId::from_entries(&entries).unwrap_or_else(|_| supported.clone())
}

fn adapt_entry(entry: &mut kvm_cpuid_entry2, apic_id: u8, timing_leaf: bool) {
    let apic = u32::from(apic_id);
    match entry.function {
        1 => {
            entry.ecx |= HYPERVISOR_BIT;
            // EBX[31:24] initial APIC ID, EBX[23:16] logical processor count.
            entry.ebx = (entry.ebx & 0xffff) | (apic << 24) | (1 << 16);
        }
        4 => {
            // One core per package, no cache sharing between vCPUs.
            entry.eax &= !((0x3f << 26) | (0xfff << 14));
        }
        0xb | 0x1f => entry.edx = apic,
        0x8000_0007 => entry.edx |= INVARIANT_TSC_BIT,
        HV_SIGNATURE_LEAF if timing_leaf => entry.eax = entry.eax.max(HV_TIMING_LEAF),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }

    fn find(cpuid: &CpuId, function: u32) -> kvm_cpuid_entry2 {
        *cpuid
            .as_slice()
            .iter()
            .find(|e| e.function == function)
            .expect("leaf present")
    }

    fn kvm_like() -> CpuId {
        CpuId::from_entries(&[
            leaf(0, 0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
            leaf(1, 0x806f8, 0xff08_0800, 0x7ffa_3223, 0x0f8b_fbff),
            leaf(0xb, 1, 1, 0x100, 7),
            leaf(
                HV_SIGNATURE_LEAF,
                0x4000_0001,
                0x4b4d_564b,
                0x564b_4d56,
                0x4d,
            ),
            leaf(0x4000_0001, 0x01ff_ffff, 0, 0, 0),
            leaf(0x8000_0007, 0, 0, 0, 0),
        ])
        .unwrap()
    }

    #[test]
    fn publishes_hypervisor_invariant_tsc_and_timing_leaf() {
        let out = adapt(&kvm_like(), 0, Some(2_100_000));
        assert_ne!(find(&out, 1).ecx & HYPERVISOR_BIT, 0);
        assert_ne!(find(&out, 0x8000_0007).edx & INVARIANT_TSC_BIT, 0);
        assert_eq!(find(&out, HV_SIGNATURE_LEAF).eax, HV_TIMING_LEAF);
        let timing = find(&out, HV_TIMING_LEAF);
        assert_eq!((timing.eax, timing.ebx), (2_100_000, APIC_BUS_KHZ));
        // The paravirt feature leaf (kvmclock bits) is kept as KVM gave it.
        assert_eq!(find(&out, 0x4000_0001).eax, 0x01ff_ffff);
        // Signature untouched.
        assert_eq!(find(&out, HV_SIGNATURE_LEAF).ebx, 0x4b4d_564b);
    }

    #[test]
    fn apic_ids_are_consistent() {
        let out = adapt(&kvm_like(), 3, Some(1));
        assert_eq!(find(&out, 1).ebx >> 24, 3);
        assert_eq!((find(&out, 1).ebx >> 16) & 0xff, 1);
        assert_eq!(find(&out, 0xb).edx, 3);
        // Low 16 bits of leaf 1 EBX (brand index, CLFLUSH size) are kept.
        assert_eq!(find(&out, 1).ebx & 0xffff, 0x0800);
    }

    #[test]
    fn no_timing_leaf_without_tsc_frequency() {
        let out = adapt(&kvm_like(), 0, None);
        assert!(out.as_slice().iter().all(|e| e.function != HV_TIMING_LEAF));
        assert_eq!(find(&out, HV_SIGNATURE_LEAF).eax, 0x4000_0001);
    }

    #[test]
    fn stale_timing_leaf_is_replaced_not_duplicated() {
        let mut entries = kvm_like().as_slice().to_vec();
        entries.push(leaf(HV_TIMING_LEAF, 5, 5, 0, 0));
        let out = adapt(&CpuId::from_entries(&entries).unwrap(), 0, Some(7));
        let n = out
            .as_slice()
            .iter()
            .filter(|e| e.function == HV_TIMING_LEAF)
            .count();
        assert_eq!(n, 1);
        assert_eq!(find(&out, HV_TIMING_LEAF).eax, 7);
    }
}
