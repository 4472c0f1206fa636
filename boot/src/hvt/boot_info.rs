//! `struct hvt_boot_info`: what RDI points at when the guest starts, with
//! the manifest and the command line after it.

use super::manifest::Attachment;
use super::{write, BOOT_INFO_ADDR, BOOT_INFO_SIZE, FEATURE_RING_IO};
use vm_memory::GuestMemoryMmap;

/// What an hvt guest gets besides its image.
#[derive(Debug, Clone, Default)]
pub struct HvtParams {
    /// The guest command line (solo5-hvt joins the arguments after the
    /// kernel with spaces).
    pub cmdline: String,
    /// Attached devices by handle (manifest index).
    pub attachments: Vec<(u64, Attachment)>,
    /// CPU cycle counter (TSC) frequency in Hz; 0 when not known yet (see
    /// [`write_cycle_freq`]).
    pub cpu_cycle_freq: u64,
    /// Guest-physical address of the network ring ([`super::ring`]) when
    /// the monitor offers it: the top [`super::ring::RESERVE`] bytes of
    /// RAM. The guest's memory then ends there (`mem_size`, stack), as
    /// under solo5-hvt.
    pub net_ring: Option<u64>,
}

/// Offset of `host_features` in `struct hvt_boot_info`.
pub const HOST_FEATURES_AT: u64 = 40;
/// Offset of `guest_features`: Solo5 0.12.1's bindings never write it
/// (they take the ring whenever it is offered), so a monitor cannot learn
/// from it whether the guest uses the ring.
pub const GUEST_FEATURES_AT: u64 = 44;
/// Offset of `net_ring`.
pub const NET_RING_AT: u64 = 48;

/// `struct hvt_boot_info`, then the manifest, then the command line.
pub(super) fn write_boot_info(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    kernel_end: u64,
    params: &HvtParams,
    mft: &[u8],
) -> crate::Result<()> {
    let mft_addr = BOOT_INFO_ADDR + BOOT_INFO_SIZE;
    let cmdline_addr = (mft_addr + mft.len() as u64).next_multiple_of(8);
    let mut info = Vec::with_capacity(BOOT_INFO_SIZE as usize);
    for field in [
        mem_size,
        kernel_end,
        params.cpu_cycle_freq,
        cmdline_addr,
        mft_addr,
    ] {
        info.extend_from_slice(&field.to_le_bytes());
    }
    let host_features = if params.net_ring.is_some() {
        FEATURE_RING_IO
    } else {
        0
    };
    info.extend_from_slice(&host_features.to_le_bytes());
    info.extend_from_slice(&0u32.to_le_bytes()); // guest_features
    info.extend_from_slice(&params.net_ring.unwrap_or(0).to_le_bytes());
    write(mem, BOOT_INFO_ADDR, &info)?;
    write(mem, mft_addr, mft)?;
    let mut cmdline = params.cmdline.as_bytes().to_vec();
    cmdline.push(0);
    write(mem, cmdline_addr, &cmdline)
}

/// Sets `hvt_boot_info.cpu_cycle_freq` once the vCPU exists to ask KVM.
pub fn write_cycle_freq(mem: &GuestMemoryMmap, hz: u64) -> crate::Result<()> {
    write(mem, BOOT_INFO_ADDR + 16, &hz.to_le_bytes())
}
