//! `--net NAME[,mac=..][,mtu=..]`: virtio-net NICs on existing TAP
//! interfaces, put on the PCI bus after the disks, in command-line order.

use crate::error::{Error, Result};
use crate::pci::PciBuilder;
use ukvm_virtio_net::{Net, NetSpec, Tap};

/// Parses every `--net` (no I/O).
pub fn parse_nets(specs: &[String]) -> Result<Vec<NetSpec>> {
    specs
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|e: ukvm_virtio_net::SpecError| Error::Config(e.to_string()))
        })
        .collect()
}

/// Attaches to every TAP, before any KVM object exists, so a missing or
/// busy interface costs one line of error and nothing else.
pub fn open_nets(specs: Vec<NetSpec>) -> Result<Vec<(NetSpec, Tap)>> {
    let mut nets = Vec::with_capacity(specs.len());
    for spec in specs {
        if nets.iter().any(|(s, _): &(NetSpec, Tap)| s.tap == spec.tap) {
            return Err(Error::Config(format!(
                "--net {}: the same TAP is given twice",
                spec.tap
            )));
        }
        let tap = Tap::open(&spec.tap).map_err(|e| Error::Device(e.to_string()))?;
        nets.push((spec, tap));
    }
    Ok(nets)
}

/// One virtio-net device per TAP, made before the VM exists.
pub fn make_nics(nets: Vec<(NetSpec, Tap)>) -> Result<Vec<Net<Tap>>> {
    nets.into_iter()
        .map(|(spec, tap)| {
            Net::new(tap, spec.mac, spec.mtu)
                .map_err(|e| Error::Device(format!("--net {}: {e}", spec.tap)))
        })
        .collect()
}

/// Puts the virtio-net devices on the bus, in order.
pub fn add_nets(pci: &mut PciBuilder<'_>, nets: Vec<Net<Tap>>) -> Result<()> {
    nets.into_iter().try_for_each(|n| pci.add_virtio(n))
}
