//! A per-boot cache of `KVM_GET_SUPPORTED_CPUID`.
//!
//! The ioctl makes the host kernel execute CPUID for every leaf; under
//! nested virtualisation each of those traps to the outer hypervisor, and
//! on the machines measured here the ioctl takes ~0.3 ms, the largest
//! single step of a boot. Its answer depends only on the host CPU and the
//! loaded KVM module, so ukvm keeps it in a file whose name holds the
//! kernel's boot id and the change time of `/dev/kvm` (recreated whenever
//! the KVM module is loaded): a reboot or a module reload changes the name
//! and the table is fetched again. libvirt caches QEMU's capabilities the
//! same way.
//!
//! The file lives in a directory only its user can write (
//! `$XDG_RUNTIME_DIR/ukvm`, or `/run/ukvm` for root); without one, or with
//! `UKVM_NO_CPUID_CACHE=1`, nothing is cached. Any failure to read or
//! write the cache falls back to the ioctl: the cache can make a boot
//! faster, never fail it.

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::Kvm;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const ENTRY_SIZE: usize = std::mem::size_of::<kvm_cpuid_entry2>();
const PREFIX: &str = "kvm-cpuid-";

/// KVM's supported CPUID table, from the cache when it is valid.
pub fn supported_cpuid(kvm: &Kvm) -> Result<CpuId, kvm_ioctls::Error> {
    let path = cache_path(kvm);
    if let Some(table) = path.as_deref().and_then(load) {
        return Ok(table);
    }
    let table = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)?;
    if let Some(p) = path {
        store(&p, &table);
    }
    Ok(table)
}

/// The cache file for this boot and this load of the KVM module.
fn cache_path(kvm: &Kvm) -> Option<PathBuf> {
    if std::env::var_os("UKVM_NO_CPUID_CACHE").is_some_and(|v| v == "1") {
        return None;
    }
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("ukvm"),
        // SAFETY: geteuid has no preconditions.
        _ if unsafe { libc::geteuid() } == 0 => PathBuf::from("/run/ukvm"),
        _ => return None,
    };
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    // SAFETY: all-zero is a valid `stat` (plain integers).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on the open /dev/kvm fd writes only `st`.
    if unsafe { libc::fstat(kvm.as_raw_fd(), &mut st) } != 0 {
        return None;
    }
    Some(dir.join(format!(
        "{PREFIX}{}-{}.{}",
        boot_id.trim(),
        st.st_ctime,
        st.st_ctime_nsec
    )))
}

/// Reads a cached table; `None` if absent or malformed.
fn load(path: &Path) -> Option<CpuId> {
    let bytes = fs::read(path).ok()?;
    let n = bytes.len() / ENTRY_SIZE;
    if bytes.len() % ENTRY_SIZE != 0 || n == 0 || n > KVM_MAX_CPUID_ENTRIES {
        return None;
    }
    let entries: Vec<kvm_cpuid_entry2> = bytes
        .chunks_exact(ENTRY_SIZE)
        // SAFETY: each chunk is exactly one kvm_cpuid_entry2, a plain C
        // struct of integers for which every bit pattern is valid;
        // read_unaligned copes with the Vec's alignment.
        .map(|c| unsafe { std::ptr::read_unaligned(c.as_ptr().cast::<kvm_cpuid_entry2>()) })
        .collect();
    CpuId::from_entries(&entries).ok()
}

/// Writes the table atomically (temporary file, then rename) and removes
/// the files of earlier boots or module loads. Errors are ignored.
fn store(path: &Path, table: &CpuId) {
    let Some(dir) = path.parent() else { return };
    if fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
        .is_err()
    {
        return;
    }
    if let Ok(old) = fs::read_dir(dir) {
        for e in old.flatten() {
            if e.file_name().to_string_lossy().starts_with(PREFIX) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let entries = table.as_slice();
    // SAFETY: the entries are plain C structs of integers (no padding
    // bytes: 10 u32 fields); viewing them as bytes reads initialised memory.
    let bytes = unsafe {
        std::slice::from_raw_parts(entries.as_ptr().cast::<u8>(), entries.len() * ENTRY_SIZE)
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes));
    if written.is_err() || fs::rename(&tmp, path).is_err() {
        let _ = fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_table_loads_back_and_junk_does_not() {
        let dir = std::env::temp_dir().join(format!("ukvm-cpuid-test-{}", std::process::id()));
        let path = dir.join(format!("{PREFIX}x"));
        let entries = [
            kvm_cpuid_entry2 {
                function: 1,
                eax: 0x1234,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0x8000_0001,
                edx: 7,
                ..Default::default()
            },
        ];
        store(&path, &CpuId::from_entries(&entries).unwrap());
        let back = load(&path).unwrap();
        assert_eq!(back.as_slice(), &entries);
        fs::write(&path, [1u8; ENTRY_SIZE + 3]).unwrap();
        assert!(load(&path).is_none());
        fs::write(&path, []).unwrap();
        assert!(load(&path).is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}
