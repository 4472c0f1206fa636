//! Solo5 hvt guests in the monitor: devices attached by manifest name
//! (`--disk NAME=FILE`, `--net NAME=TAP`, or bare when the manifest has
//! exactly one device of that type), loading with the attachments filled
//! into the guest's manifest, and the hypercall device that replaces the
//! legacy ports (hvt guests get no PCI and no UART: their console is the
//! puts hypercall).
//!
//! The backends are the virtio ones: files through `ukvm_virtio_blk::Disk`
//! (`.iso` read-only by default, 512-byte sectors), interfaces through
//! `ukvm_virtio_net::Tap`.

pub(crate) mod hypercalls;
mod net;
mod ring;

use crate::error::{Error, Result};
use hypercalls::{BlockDev, Hypercalls};
use kvm_ioctls::{VcpuFd, VmFd};
use net::{NetDev, Nets};
use ring::KickPort;
use std::sync::{Arc, Mutex};
use ukvm_boot::hvt::{self, Attachment, DeviceKind, HvtParams, Manifest};
use ukvm_boot::Boot;
use ukvm_devices::serial::Serial;
use ukvm_devices::Bus;
use ukvm_virtio_blk::{Disk, DiskSpec, SECTOR_SIZE};
use ukvm_virtio_net::{NetSpec, Tap};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// An hvt guest's manifest and the devices attached to it.
pub(crate) struct Hvt {
    /// Bytes of RAM: the guest's memory, plus the network ring's reserve.
    ram_bytes: u64,
    manifest: Manifest,
    params: HvtParams,
    blocks: Vec<(u64, BlockDev)>,
    nets: Vec<(u64, NetDev)>,
}

/// Splits `NAME=REST` from a device option; `None` for the bare form.
fn split_name(spec: &str) -> (Option<&str>, &str) {
    let head = spec.split(',').next().unwrap_or("");
    match head.split_once('=') {
        Some((name, _)) => (Some(name), &spec[name.len() + 1..]),
        None => (None, spec),
    }
}

/// Takes a `sector-size=N` option out of `FILE[,OPTIONS]`: Solo5 block
/// devices may have sectors of any power of two from 512 bytes
/// (`--block-sector-size` of solo5-hvt).
fn block_size_option(file: &str) -> std::result::Result<(String, u16), String> {
    let mut parts: Vec<&str> = file.split(',').collect();
    let mut size = SECTOR_SIZE as u16;
    if let Some(at) = parts.iter().position(|p| p.starts_with("sector-size=")) {
        let value = &parts[at]["sector-size=".len()..];
        size = value
            .parse::<u16>()
            .ok()
            .filter(|&n| n >= 512 && n.is_power_of_two())
            .ok_or_else(|| {
                format!("sector-size={value}: Block size must be a multiple of 2 greater than or equal 512")
            })?;
        parts.remove(at);
    }
    Ok((parts.join(","), size))
}

fn names(manifest: &Manifest, kind: DeviceKind) -> String {
    let names: Vec<&str> = manifest.of_kind(kind).map(|d| d.name.as_str()).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// The manifest handle `spec` attaches to.
fn resolve(manifest: &Manifest, kind: DeviceKind, opt: &str, spec: &str) -> Result<(u64, String)> {
    let (name, _) = split_name(spec);
    let found: Vec<_> = match name {
        Some(name) => manifest.of_kind(kind).filter(|d| d.name == name).collect(),
        None => manifest.of_kind(kind).collect(),
    };
    match (name, found.as_slice()) {
        (_, [d]) => Ok((d.handle, d.name.clone())),
        (Some(name), _) => Err(Error::Config(format!(
            "{opt} {spec}: the unikernel's manifest declares no {} device '{name}' (it declares: {})",
            kind.name(),
            names(manifest, kind)
        ))),
        (None, []) => Err(Error::Config(format!(
            "{opt} {spec}: the unikernel's manifest declares no {} device",
            kind.name()
        ))),
        (None, found) => Err(Error::Config(format!(
            "{opt} {spec}: the unikernel's manifest declares {} {} devices ({}); name one as {opt} NAME={}",
            found.len(),
            kind.name(),
            names(manifest, kind),
            if kind == DeviceKind::Block { "FILE" } else { "TAP" }
        ))),
    }
}

impl Hvt {
    /// Reads the manifest of `image`, attaches every `--disk` and `--net`
    /// to the device it names and checks that none is left unattached.
    /// Runs before any KVM object exists.
    pub(crate) fn new(
        name: &str,
        image: &[u8],
        mem_bytes: u64,
        cmdline: &str,
        disks: &[String],
        nets: &[String],
        net_ring: bool,
    ) -> Result<Hvt> {
        let manifest = hvt::probe(image, mem_bytes).map_err(|source| Error::Kernel {
            name: name.to_string(),
            source,
        })?;
        let mut hvt = Hvt {
            ram_bytes: mem_bytes,
            manifest,
            params: HvtParams {
                cmdline: cmdline.to_string(),
                ..Default::default()
            },
            blocks: Vec::new(),
            nets: Vec::new(),
        };
        for spec in disks {
            hvt.attach_disk(spec)?;
        }
        for spec in nets {
            hvt.attach_net(spec)?;
        }
        hvt.check_all_attached()?;
        if net_ring && !hvt.nets.is_empty() {
            // As solo5-hvt: the ring gets 2 MiB on top of the guest's
            // memory (within the 4 GiB limit), and the guest's memory ends
            // where it starts.
            hvt.ram_bytes = (mem_bytes + hvt::ring::RESERVE).min(hvt::MAX_MEM_SIZE);
            hvt.params.net_ring = Some(hvt.ram_bytes - hvt::ring::RESERVE);
        }
        Ok(hvt)
    }

    fn claim(&mut self, handle: u64, name: &str, opt: &str, attachment: Attachment) -> Result<()> {
        if self.params.attachments.iter().any(|(h, _)| *h == handle) {
            return Err(Error::Config(format!(
                "{opt}: device '{name}' is attached twice"
            )));
        }
        self.params.attachments.push((handle, attachment));
        Ok(())
    }

    fn attach_disk(&mut self, spec: &str) -> Result<()> {
        let (handle, name) = resolve(&self.manifest, DeviceKind::Block, "--disk", spec)?;
        let (_, file) = split_name(spec);
        let (file, block_size) = block_size_option(file)
            .map_err(|why| Error::Config(format!("--disk {spec}: {why}")))?;
        let disk_spec =
            DiskSpec::parse(&file).map_err(|e| Error::Config(format!("--disk {spec}: {e}")))?;
        let disk = Disk::open(&disk_spec).map_err(|e| Error::Device(e.to_string()))?;
        let capacity = disk.sectors * SECTOR_SIZE;
        // solo5-hvt's checks and words.
        if !capacity.is_multiple_of(u64::from(block_size)) {
            return Err(Error::Device(format!(
                "{name}: Backing storage size must be block aligned ({block_size} bytes)"
            )));
        }
        if capacity < u64::from(block_size) {
            return Err(Error::Device(format!(
                "{name}: Backing storage must be at least 1 block ({block_size} bytes) in size"
            )));
        }
        self.claim(
            handle,
            &name,
            "--disk",
            Attachment::Block {
                capacity,
                block_size,
            },
        )?;
        self.blocks.push((handle, BlockDev::new(disk)));
        Ok(())
    }

    fn attach_net(&mut self, spec: &str) -> Result<()> {
        let (handle, name) = resolve(&self.manifest, DeviceKind::Net, "--net", spec)?;
        let (_, tap_spec) = split_name(spec);
        let net_spec: NetSpec = tap_spec
            .parse()
            .map_err(|e| Error::Config(format!("--net {spec}: {e}")))?;
        let tap = Tap::open(&net_spec.tap).map_err(|e| Error::Device(e.to_string()))?;
        // Without mtu=, the guest gets the interface's MTU, as solo5-hvt
        // gives it.
        let mtu = if tap_spec.split(',').any(|o| o.starts_with("mtu=")) {
            net_spec.mtu
        } else {
            tap.mtu().map_err(|e| Error::Device(e.to_string()))?
        };
        let attachment = Attachment::Net {
            mac: net_spec.mac.0,
            mtu,
        };
        self.claim(handle, &name, "--net", attachment)?;
        let dev = NetDev::new(tap, mtu).map_err(|e| Error::Device(e.to_string()))?;
        self.nets.push((handle, dev));
        Ok(())
    }

    /// Solo5's rule: every declared device must be attached.
    fn check_all_attached(&self) -> Result<()> {
        let missing: Vec<String> = self
            .manifest
            .devices
            .iter()
            .filter(|d| !self.params.attachments.iter().any(|(h, _)| *h == d.handle))
            .map(|d| {
                let (opt, what) = match d.kind {
                    DeviceKind::Block => ("--disk", "FILE"),
                    DeviceKind::Net => ("--net", "TAP"),
                };
                format!(
                    "{} device '{}' (add {opt} {}={what})",
                    d.kind.name(),
                    d.name,
                    d.name
                )
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::Config(format!(
            "the unikernel's manifest declares devices left unattached: {}",
            missing.join("; ")
        )))
    }

    /// Guest RAM: one range from 0, as solo5-hvt maps it (the hvt machine
    /// has no MMIO hole to leave out).
    pub(crate) fn ram_ranges(&self) -> Vec<(GuestAddress, usize)> {
        vec![(GuestAddress(0), self.ram_bytes as usize)]
    }

    /// Loads the image with the attachments filled into its manifest.
    pub(crate) fn load(&self, mem: &GuestMemoryMmap, image: &[u8]) -> ukvm_boot::Result<Boot> {
        hvt::load(mem, image, &self.params)
    }

    /// Tells the guest the TSC frequency, which only the vCPU knows.
    pub(crate) fn set_cycle_freq(&self, vcpu: &VcpuFd, mem: &GuestMemoryMmap) -> Result<()> {
        let khz = vcpu.get_tsc_khz().map_err(|source| Error::Kvm {
            op: "KVM_GET_TSC_KHZ",
            source,
        })?;
        hvt::write_cycle_freq(mem, u64::from(khz) * 1000)
            .map_err(|e| Error::Config(format!("writing the hvt boot information: {e}")))
    }

    /// Puts the hypercall device on the port bus, and the network ring's
    /// kick port when the ring is offered: the hvt machine's only devices.
    /// Returns the fds the vCPU thread uses for them (TAPs, disks, the
    /// wake-up and kick eventfds), for its seccomp filter.
    pub(crate) fn attach_bus(
        self,
        seccomp: ukvm_sandbox::SeccompMode,
        vm: &VmFd,
        pio: &mut Bus,
        mem: GuestMemoryMmap,
        serial: Arc<Mutex<Serial>>,
        wake: EventFd,
    ) -> Result<ukvm_sandbox::Fds> {
        use std::os::fd::AsRawFd;
        let mut fds = ukvm_sandbox::Fds {
            taps: self.nets.iter().map(|(_, d)| d.fd()).collect(),
            disks: self.blocks.iter().filter_map(|(_, b)| b.fd()).collect(),
            events: vec![wake.as_raw_fd()],
            ..Default::default()
        };
        let nets: Nets = self
            .nets
            .into_iter()
            .map(|(h, d)| (h, Mutex::new(d)))
            .collect();
        let fault = Arc::default();
        let port_err = |e: ukvm_devices::bus::Error| Error::Device(format!("port bus: {e}"));
        if let Some(at) = self.params.net_ring {
            let kick = KickPort::start(
                vm,
                mem.clone(),
                at,
                nets.clone(),
                Arc::clone(&fault),
                seccomp,
            )
            .map_err(|e| Error::Device(format!("hvt network ring: {e}")))?;
            // Written when the port exits to ukvm, and at teardown.
            fds.events.push(kick.fd());
            pio.insert(
                u64::from(hvt::ring::KICK_PORT),
                4,
                Arc::new(Mutex::new(kick)),
            )
            .map_err(port_err)?;
        }
        let device = Hypercalls::new(mem, serial, self.blocks, nets, fault).wake_on(wake);
        // A 4-byte outl to the last call's port covers 3 more ports.
        pio.insert(
            u64::from(hvt::HYPERCALL_PIO_BASE),
            u64::from(hvt::HYPERCALL_MAX) + 3,
            Arc::new(Mutex::new(device)),
        )
        .map_err(port_err)?;
        Ok(fds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_from_device_options() {
        assert_eq!(
            split_name("storage=disk.img"),
            (Some("storage"), "disk.img")
        );
        assert_eq!(split_name("disk.img,ro"), (None, "disk.img,ro"));
        assert_eq!(
            split_name("service=tap0,mac=02:00:00:00:00:01"),
            (Some("service"), "tap0,mac=02:00:00:00:00:01")
        );
        assert_eq!(split_name("tap0,mtu=1500"), (None, "tap0,mtu=1500"));
    }
}
