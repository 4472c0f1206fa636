//! The Solo5 hvt machine: the hypercall device is its only device; `--disk`
//! and `--net` attach to the guest's manifest (see `crate::hvt`).

use super::{Devices, Machine, Wiring};
use crate::config::VmConfig;
use crate::error::{Error, Result};
use crate::hvt::Hvt;
use crate::interrupts;
use kvm_ioctls::VcpuFd;
use ukvm_boot::{Boot, BootParams};
use ukvm_devices::Bus;
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// An hvt guest and its attached devices.
pub(crate) struct HvtMachine(Hvt, ukvm_sandbox::SeccompMode);

impl HvtMachine {
    /// Reads the manifest and attaches `--disk`/`--net` to it.
    pub(crate) fn new(name: &str, image: &[u8], cfg: &VmConfig) -> Result<Self> {
        Hvt::new(
            name,
            image,
            cfg.mem_bytes(),
            &cfg.cmdline,
            &cfg.disks,
            &cfg.nets,
            cfg.hvt_net_ring,
        )
        .map(|hvt| HvtMachine(hvt, cfg.seccomp))
    }
}

impl Machine for HvtMachine {
    fn ram_ranges(&self, _mem_bytes: u64) -> Vec<(GuestAddress, usize)> {
        self.0.ram_ranges()
    }

    fn load(
        &self,
        mem: &GuestMemoryMmap,
        image: &[u8],
        _params: &BootParams,
    ) -> ukvm_boot::Result<Boot> {
        self.0.load(mem, image)
    }

    fn configure_vcpu(&self, vcpu: &VcpuFd, mem: &GuestMemoryMmap) -> Result<()> {
        self.0.set_cycle_freq(vcpu, mem)
    }

    fn attach(self: Box<Self>, wiring: Wiring<'_>) -> Result<Devices> {
        let mut pio = Bus::new();
        let wake = wiring
            .kicker
            .wake_fd()
            .try_clone()
            .map_err(|e| Error::Device(format!("vCPU kick: {e}")))?;
        let fds = self.0.attach_bus(
            self.1,
            wiring.vm,
            &mut pio,
            wiring.mem.clone(),
            wiring.serial,
            wake,
        )?;
        Ok(Devices {
            pio,
            mmio: Bus::new(),
            io: None,
            delivery: Box::new(interrupts::None),
            fds,
        })
    }
}
