//! Feature bits offered to the driver and what the accepted set means for
//! the TAP: the virtio-net header length and the TUNSETOFFLOAD flags.

use crate::tap::offload;
use virtio_bindings::virtio_net::*;

const fn bit(b: u32) -> u64 {
    1 << b
}

/// VIRTIO_F_VERSION_1.
pub const VERSION_1: u64 = 1 << 32;

/// Receive-direction features and the TAP offload each needs.
const GUEST_OFFLOADS: [(u32, u32); 5] = [
    (VIRTIO_NET_F_GUEST_CSUM, offload::CSUM),
    (VIRTIO_NET_F_GUEST_TSO4, offload::TSO4),
    (VIRTIO_NET_F_GUEST_TSO6, offload::TSO6),
    (VIRTIO_NET_F_GUEST_ECN, offload::TSO_ECN),
    (VIRTIO_NET_F_GUEST_UFO, offload::UFO),
];

/// Features the device offers for a TAP that accepts `tap_offloads`.
///
/// Transmit offloads (CSUM, HOST_*) need no TUNSETOFFLOAD, since the TAP
/// finishes partial checksums and segments GSO frames written to it, but
/// they are offered only where the kernel shows it knows the matching kind.
pub fn offered(tap_offloads: u32) -> u64 {
    let mut f = bit(VIRTIO_NET_F_MAC)
        | bit(VIRTIO_NET_F_STATUS)
        | bit(VIRTIO_NET_F_MTU)
        | bit(VIRTIO_NET_F_MRG_RXBUF);
    for (feature, needs) in GUEST_OFFLOADS {
        if tap_offloads & needs == needs {
            f |= bit(feature);
        }
    }
    if tap_offloads & offload::CSUM != 0 {
        f |= bit(VIRTIO_NET_F_CSUM)
            | bit(VIRTIO_NET_F_HOST_TSO4)
            | bit(VIRTIO_NET_F_HOST_TSO6)
            | bit(VIRTIO_NET_F_HOST_ECN);
        if tap_offloads & offload::UFO != 0 {
            f |= bit(VIRTIO_NET_F_HOST_UFO);
        }
    }
    f
}

/// What the driver accepted, in the terms the data path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Bytes of virtio-net header in front of each frame: 12 with
    /// VERSION_1 or MRG_RXBUF, else the legacy 10.
    pub hdr_len: usize,
    /// A received frame may span several buffers.
    pub mrg_rxbuf: bool,
    /// TUNSETOFFLOAD flags: what the guest can receive unfinished.
    pub tap_offloads: u32,
}

/// Interprets the features the driver accepted (already masked by the
/// transport to the offered ones).
pub fn negotiate(acked: u64) -> Negotiated {
    let has = |b: u32| acked & bit(b) != 0;
    let mrg_rxbuf = has(VIRTIO_NET_F_MRG_RXBUF);
    let hdr_len = if mrg_rxbuf || acked & VERSION_1 != 0 {
        12
    } else {
        10
    };
    // Segmentation offloads are meaningless without checksum offload
    // (virtio 1.2 5.1.3.1): a driver that takes TSO but not GUEST_CSUM
    // gets neither, and receives finished frames.
    let mut tap_offloads = 0;
    if has(VIRTIO_NET_F_GUEST_CSUM) {
        for (feature, flag) in GUEST_OFFLOADS {
            if has(feature) {
                tap_offloads |= flag;
            }
        }
    }
    // ECN is a TSO variant (virtio 1.2 5.1.3.1; the TAP refuses it
    // alone with EINVAL, which would fail the device's activation).
    if tap_offloads & (offload::TSO4 | offload::TSO6) == 0 {
        tap_offloads &= !offload::TSO_ECN;
    }
    Negotiated {
        hdr_len,
        mrg_rxbuf,
        tap_offloads,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tap::offload::*;

    #[test]
    fn offers_follow_the_tap() {
        let none = offered(0);
        assert_eq!(none & bit(VIRTIO_NET_F_GUEST_CSUM), 0);
        assert_eq!(none & bit(VIRTIO_NET_F_CSUM), 0);
        assert_ne!(none & bit(VIRTIO_NET_F_MAC), 0);
        assert_ne!(none & bit(VIRTIO_NET_F_MRG_RXBUF), 0);
        let all = offered(CSUM | TSO4 | TSO6 | TSO_ECN | UFO);
        for b in [
            VIRTIO_NET_F_CSUM,
            VIRTIO_NET_F_GUEST_CSUM,
            VIRTIO_NET_F_GUEST_TSO4,
            VIRTIO_NET_F_GUEST_UFO,
            VIRTIO_NET_F_HOST_UFO,
        ] {
            assert_ne!(all & bit(b), 0, "bit {b}");
        }
        // A kernel without UFO: no UFO either way.
        let no_ufo = offered(CSUM | TSO4 | TSO6);
        assert_eq!(
            no_ufo & (bit(VIRTIO_NET_F_GUEST_UFO) | bit(VIRTIO_NET_F_HOST_UFO)),
            0
        );
        assert_ne!(no_ufo & bit(VIRTIO_NET_F_HOST_TSO4), 0);
    }

    #[test]
    fn header_length() {
        assert_eq!(negotiate(0).hdr_len, 10);
        assert_eq!(negotiate(bit(VIRTIO_NET_F_MRG_RXBUF)).hdr_len, 12);
        assert_eq!(negotiate(VERSION_1).hdr_len, 12);
        assert!(!negotiate(VERSION_1).mrg_rxbuf);
    }

    #[test]
    fn offloads_fall_back_when_not_taken() {
        assert_eq!(negotiate(0).tap_offloads, 0);
        assert_eq!(negotiate(bit(VIRTIO_NET_F_GUEST_TSO4)).tap_offloads, 0);
        let n = negotiate(bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO4));
        assert_eq!(n.tap_offloads, CSUM | TSO4);
        // ECN without TSO: no ECN (the TAP would refuse the set).
        let ecn = bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_ECN);
        assert_eq!(negotiate(ecn).tap_offloads, CSUM);
        let ecn_tso6 = negotiate(ecn | bit(VIRTIO_NET_F_GUEST_TSO6));
        assert_eq!(ecn_tso6.tap_offloads, CSUM | TSO6 | TSO_ECN);
        // Transmit offloads never change what the TAP may send us.
        assert_eq!(negotiate(bit(VIRTIO_NET_F_CSUM)).tap_offloads, 0);
    }
}
