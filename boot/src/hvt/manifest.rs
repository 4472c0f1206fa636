//! The application manifest (`.note.solo5.manifest`): the devices an hvt
//! guest declares, validated as solo5-hvt does, and the bytes the guest
//! sees once the monitor has attached its devices.

use super::notes::{find_note, le32, note_err, MFT1_NOTE_TYPE};
use super::Error;

/// The note header is 20 bytes; `struct mft` holds 64-bit fields, so the
/// compiler puts it at offset 24 and the descriptor starts with 4 bytes of
/// padding (`MFT1_NOTE_ALIGN`).
pub(super) const MFT_DESC_PAD: usize = 4;
/// Manifest ABI version (`MFT_VERSION`).
pub const MFT_VERSION: u32 = 1;
/// Most manifest entries (`MFT_MAX_ENTRIES`).
pub const MFT_MAX_ENTRIES: usize = 64;
/// Bytes of an entry name, NUL included (`MFT_NAME_SIZE`).
pub const MFT_NAME_SIZE: usize = 68;
/// `struct mft` header: version, entries.
pub(super) const MFT_HEADER_SIZE: usize = 8;
/// `sizeof(struct mft_entry)`: name[68], type, union u (16, 8-aligned),
/// union b (8), bool attached, padded to 8.
pub(super) const MFT_ENTRY_SIZE: usize = 104;
pub(super) const MFT_TYPE_AT: usize = 68;
pub(super) const MFT_U_AT: usize = 72;
pub(super) const MFT_ATTACHED_AT: usize = 96;
pub(super) const MFT_DEV_BLOCK_BASIC: u32 = 1;
pub(super) const MFT_DEV_NET_BASIC: u32 = 2;
pub(super) const MFT_RESERVED_FIRST: u32 = 1 << 30;
/// Largest manifest descriptor a valid image can carry.
pub const MFT_NOTE_MAX_SIZE: usize =
    MFT_DESC_PAD + MFT_HEADER_SIZE + MFT_MAX_ENTRIES * MFT_ENTRY_SIZE;

/// Device types of the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// `MFT_DEV_BLOCK_BASIC`.
    Block,
    /// `MFT_DEV_NET_BASIC`.
    Net,
}

impl DeviceKind {
    /// Name as Solo5 prints it.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Block => "BLOCK_BASIC",
            DeviceKind::Net => "NET_BASIC",
        }
    }
}

/// One device the application declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its name (what `--disk NAME=FILE` / `--net NAME=TAP` refer to).
    pub name: String,
    /// Block or net.
    pub kind: DeviceKind,
    /// Index in the manifest: the handle the guest uses in hypercalls.
    pub handle: u64,
}

/// The application manifest, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The `struct mft` bytes as in the image (copied to the guest with
    /// the attached devices filled in).
    raw: Vec<u8>,
    /// Declared devices, in manifest order (the reserved entry left out).
    pub devices: Vec<Device>,
}

/// What the monitor attached to a manifest device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    /// A block device of `capacity` bytes in sectors of `block_size`.
    Block {
        /// Bytes.
        capacity: u64,
        /// Sector size in bytes.
        block_size: u16,
    },
    /// A network interface.
    Net {
        /// The guest's MAC address.
        mac: [u8; 6],
        /// Largest frame payload.
        mtu: u16,
    },
}

/// Reads and validates `.note.solo5.manifest` as solo5-hvt does: version,
/// entry count, exact size, the reserved first entry, NUL-terminated
/// names, no entry pre-attached, known device types.
pub fn manifest(image: &[u8]) -> Result<Manifest, Error> {
    const NOTE: &str = ".note.solo5.manifest";
    let desc = find_note(image, MFT1_NOTE_TYPE, NOTE)?.ok_or(Error::NoManifest)?;
    if desc.len() > MFT_NOTE_MAX_SIZE {
        return Err(note_err(
            NOTE,
            format!(
                "descriptor is {} bytes; at most {MFT_NOTE_MAX_SIZE} ({MFT_MAX_ENTRIES} entries) are allowed",
                desc.len()
            ),
        ));
    }
    if desc.len() < MFT_DESC_PAD + MFT_HEADER_SIZE {
        return Err(note_err(
            NOTE,
            format!(
                "descriptor is {} bytes, too small for a manifest",
                desc.len()
            ),
        ));
    }
    let raw = &desc[MFT_DESC_PAD..];
    let version = le32(raw, 0);
    if version != MFT_VERSION {
        return Err(Error::ManifestVersion {
            found: version,
            supported: MFT_VERSION,
        });
    }
    let entries = le32(raw, 4);
    if entries as usize > MFT_MAX_ENTRIES {
        return Err(Error::TooManyEntries {
            count: entries,
            max: MFT_MAX_ENTRIES,
        });
    }
    let expected = MFT_HEADER_SIZE + entries as usize * MFT_ENTRY_SIZE;
    if raw.len() != expected {
        return Err(Error::ManifestSize {
            size: raw.len(),
            entries,
            expected,
        });
    }
    let devices = parse_entries(raw, entries as usize)?;
    Ok(Manifest {
        raw: raw.to_vec(),
        devices,
    })
}

fn parse_entries(raw: &[u8], count: usize) -> Result<Vec<Device>, Error> {
    let mut devices: Vec<Device> = Vec::new();
    for index in 0..count {
        let e = &raw[MFT_HEADER_SIZE + index * MFT_ENTRY_SIZE..][..MFT_ENTRY_SIZE];
        let name_field = &e[..MFT_NAME_SIZE];
        let len = name_field
            .iter()
            .position(|&b| b == 0)
            .ok_or(Error::NameNotTerminated { index })?;
        let name = std::str::from_utf8(&name_field[..len])
            .map_err(|_| Error::NameNotUtf8 { index })?
            .to_string();
        let kind = le32(e, MFT_TYPE_AT);
        if index == 0 {
            if kind != MFT_RESERVED_FIRST || !name.is_empty() {
                return Err(Error::NoReservedEntry);
            }
            continue;
        }
        if e[MFT_ATTACHED_AT] != 0 {
            return Err(Error::PreAttached { index, name });
        }
        let kind = match kind {
            MFT_DEV_BLOCK_BASIC => DeviceKind::Block,
            MFT_DEV_NET_BASIC => DeviceKind::Net,
            k if k >= MFT_RESERVED_FIRST => continue,
            k => {
                return Err(Error::UnknownDeviceType {
                    index,
                    name,
                    kind: k,
                })
            }
        };
        if devices.iter().any(|d| d.name == name) {
            return Err(Error::DuplicateName { name });
        }
        devices.push(Device {
            name,
            kind,
            handle: index as u64,
        });
    }
    Ok(devices)
}

impl Manifest {
    /// The manifest as the guest sees it: the image's bytes with each
    /// attached device's properties and `attached` flag filled in.
    pub fn guest_bytes(&self, attachments: &[(u64, Attachment)]) -> Vec<u8> {
        let mut raw = self.raw.clone();
        for &(handle, attachment) in attachments {
            let Some(e) = usize::try_from(handle)
                .ok()
                .filter(|&h| h > 0 && MFT_HEADER_SIZE + (h + 1) * MFT_ENTRY_SIZE <= raw.len())
                .map(|h| &mut raw[MFT_HEADER_SIZE + h * MFT_ENTRY_SIZE..][..MFT_ENTRY_SIZE])
            else {
                continue;
            };
            let u = &mut e[MFT_U_AT..MFT_U_AT + 16];
            u.fill(0);
            match attachment {
                Attachment::Block {
                    capacity,
                    block_size,
                } => {
                    u[..8].copy_from_slice(&capacity.to_le_bytes());
                    u[8..10].copy_from_slice(&block_size.to_le_bytes());
                }
                Attachment::Net { mac, mtu } => {
                    u[..6].copy_from_slice(&mac);
                    u[6..8].copy_from_slice(&mtu.to_le_bytes());
                }
            }
            e[MFT_ATTACHED_AT] = 1;
        }
        raw
    }

    /// The devices of one kind.
    pub fn of_kind(&self, kind: DeviceKind) -> impl Iterator<Item = &Device> {
        self.devices.iter().filter(move |d| d.kind == kind)
    }
}
