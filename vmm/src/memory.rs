//! Guest RAM: anonymous, not prefaulted (the kernel supplies zero pages on
//! first touch, so a 512 MiB guest costs nothing until it uses its memory),
//! laid out as the machine says (split around the MMIO hole for PCs, one
//! range for hvt), and registered with KVM.

use crate::error::{Error, Result};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{
    GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress,
};

/// Maps guest RAM at `ranges` (`(start, size)`, see
/// `Machine::ram_ranges`).
pub fn create(ranges: &[(GuestAddress, usize)]) -> Result<GuestMemoryMmap> {
    GuestMemoryMmap::from_ranges(ranges).map_err(|e| Error::Memory {
        mib: ranges.iter().map(|r| r.1 as u64).sum::<u64>() >> 20,
        reason: e.to_string(),
    })
}

/// Registers every region of `mem` with the VM, one slot each.
pub fn register(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<()> {
    for (slot, region) in mem.iter().enumerate() {
        let host = region
            .get_host_address(MemoryRegionAddress(0))
            .map_err(|e| Error::Memory {
                mib: region.len() >> 20,
                reason: e.to_string(),
            })?;
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the mapping belongs to `mem`, which the `Vm` keeps alive
        // for as long as the VM fd exists (fields drop in order: VM first).
        unsafe { vm.set_user_memory_region(region) }.map_err(|source| Error::Kvm {
            op: "KVM_SET_USER_MEMORY_REGION",
            source,
        })?;
    }
    Ok(())
}
