//! The programs compared: ukvm, QEMU as a microvm and as a PC, and the floor
//! (a minimal KVM program of our own). Each builds the command line that
//! boots one guest.

use crate::guests::Guest;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One program that boots guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Monitor {
    /// ukvm-floor: create VM, one vCPU, run to one I/O exit, exit.
    Floor,
    /// ukvm-floor with KVM's in-kernel irqchip (`KVM_CREATE_IRQCHIP`).
    FloorIrqchip,
    /// The ukvm CLI.
    Ukvm,
    /// The ukvm CLI with `--irqchip kvm` (KVM's PIC, IOAPIC and PIT instead
    /// of ukvm's own): the A/B of issue 12.
    UkvmKvmIrqchip,
    /// The ukvm CLI with `--seccomp=off` (no seccomp filters, and so no
    /// Landlock either): what the sandbox costs, A/B in one run.
    UkvmNoSeccomp,
    /// A second ukvm binary (`--ukvm-b`), to A/B-test a change.
    UkvmB,
    /// `qemu-system-x86_64 -M microvm` with as little as boots the guest.
    QemuMicrovm,
    /// `qemu-system-x86_64 -M pc` (SeaBIOS, the default PC).
    QemuPc,
    /// Solo5's own hvt tender (`../shared/solo5/solo5-hvt`), the peer for
    /// Solo5 hvt guests.
    Solo5Hvt,
}

/// Every monitor, in the order each round runs them.
pub const ALL: [Monitor; 8] = [
    Monitor::Ukvm,
    Monitor::UkvmKvmIrqchip,
    Monitor::UkvmNoSeccomp,
    Monitor::QemuMicrovm,
    Monitor::QemuPc,
    Monitor::Solo5Hvt,
    Monitor::Floor,
    Monitor::FloorIrqchip,
];

impl Monitor {
    /// Name in the report and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Monitor::Floor => "floor",
            Monitor::FloorIrqchip => "floor-irqchip",
            Monitor::Ukvm => "ukvm",
            Monitor::UkvmKvmIrqchip => "ukvm-kvmirq",
            Monitor::UkvmNoSeccomp => "ukvm-noseccomp",
            Monitor::UkvmB => "ukvm-b",
            Monitor::QemuMicrovm => "qemu-microvm",
            Monitor::QemuPc => "qemu-pc",
            Monitor::Solo5Hvt => "solo5-hvt",
        }
    }

    /// The floor programs, which boot no guest.
    pub fn is_floor(self) -> bool {
        matches!(self, Monitor::Floor | Monitor::FloorIrqchip)
    }

    /// Parses a name from [`Monitor::name`].
    pub fn from_name(name: &str) -> Option<Monitor> {
        ALL.into_iter()
            .chain([Monitor::UkvmB])
            .find(|m| m.name() == name)
    }
}

/// Where the programs are.
pub struct Programs {
    /// The ukvm binary.
    pub ukvm: PathBuf,
    /// The ukvm binary to compare it with (`--ukvm-b`).
    pub ukvm_b: PathBuf,
    /// The floor binary.
    pub floor: PathBuf,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// Solo5's hvt tender.
    pub solo5_hvt: PathBuf,
}

impl Programs {
    /// Runs the binaries cargo built (ukvm, `--ukvm-b`, the floor) from
    /// copies in `dir`, each in a folder of its own under its own name.
    ///
    /// A binary the linker has just written starts ~9% slower (CPU time,
    /// hello-quiet; `args_parsed` +130 us) than a copy of the same file
    /// (`cp`, `copy_file_range`), for as long as the linker's pages stay
    /// in the page cache: exec maps its text from those pages. Comparing
    /// a fresh build with a copied one (`--ukvm-b /tmp/base`) measured the
    /// difference of the files, not of the builds: the same binary at both
    /// paths came out at 1.08 against itself. Copies of both are alike.
    pub fn copy_into(&mut self, dir: &Path) -> Result<(), String> {
        let copies = [
            (&mut self.ukvm, "a"),
            (&mut self.ukvm_b, "b"),
            (&mut self.floor, "floor"),
        ];
        for (path, sub) in copies {
            let Some(name) = path.file_name().map(|n| n.to_owned()) else {
                continue;
            };
            let to = dir.join(sub).join(name);
            std::fs::create_dir_all(dir.join(sub))
                .and_then(|_| std::fs::copy(&*path, &to))
                .map_err(|e| format!("copying {} to {}: {e}", path.display(), to.display()))?;
            *path = to;
        }
        Ok(())
    }
}

/// QEMU options common to both machines: no default devices or config
/// files, no display, the serial port on stdout, and isa-debug-exit on
/// 0x501 so the guest ends QEMU with status (v << 1) | 1 as it ends ukvm.
const QEMU_COMMON: [&str; 9] = [
    "-enable-kvm",
    "-nodefaults",
    "-no-user-config",
    "-nographic",
    "-serial",
    "stdio",
    "-device",
    "isa-debug-exit,iobase=0x501,iosize=2",
    "-no-reboot",
];

/// microvm's smallest form that still boots a Multiboot kernel: no option
/// ROMs, PIT, PIC, RTC or ACPI; its ISA serial port stays on (the default).
/// `-cpu host` is not used: QEMU 7.2 aborts on it under kvm_pvm (MSR 0x10a).
const MICROVM: &str = "microvm,x-option-roms=off,pit=off,pic=off,rtc=off,acpi=off";

impl Programs {
    /// The command that boots `guest` under `monitor`.
    pub fn command(&self, monitor: Monitor, guest: &Guest) -> Command {
        match monitor {
            Monitor::Floor | Monitor::FloorIrqchip => {
                let mut c = Command::new(&self.floor);
                c.arg(guest.mem_mib.to_string());
                if monitor == Monitor::FloorIrqchip {
                    c.arg("irqchip");
                }
                c
            }
            Monitor::Ukvm | Monitor::UkvmB | Monitor::UkvmKvmIrqchip | Monitor::UkvmNoSeccomp => {
                let bin = if monitor == Monitor::UkvmB {
                    &self.ukvm_b
                } else {
                    &self.ukvm
                };
                let mut c = Command::new(bin);
                // One argument: a command line may start with "--".
                c.arg("--kernel")
                    .arg(&guest.kernel)
                    .arg(format!("--cmdline={}", guest.cmdline))
                    .arg("--mem")
                    .arg(guest.mem_mib.to_string())
                    .args(&guest.ukvm_args);
                match monitor {
                    Monitor::UkvmKvmIrqchip => c.args(["--irqchip", "kvm"]),
                    Monitor::UkvmNoSeccomp => c.arg("--seccomp=off"),
                    _ => &mut c,
                };
                c
            }
            Monitor::Solo5Hvt => {
                let mut c = Command::new(&self.solo5_hvt);
                c.arg(format!("--mem={}", guest.mem_mib))
                    .arg("--")
                    .arg(&guest.kernel)
                    .args(guest.cmdline.split_whitespace());
                c
            }
            Monitor::QemuMicrovm | Monitor::QemuPc => {
                let machine = if monitor == Monitor::QemuPc {
                    "pc"
                } else {
                    MICROVM
                };
                let mut c = Command::new(&self.qemu);
                c.args(QEMU_COMMON)
                    .args(["-M", machine, "-m"])
                    .arg(guest.mem_mib.to_string())
                    .arg("-kernel")
                    .arg(&guest.kernel)
                    .arg("-append")
                    .arg(guest.cmdline)
                    .args(&guest.qemu_args);
                c
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(monitor: Monitor) -> Vec<String> {
        let programs = Programs {
            ukvm: "ukvm".into(),
            ukvm_b: "ukvm-b".into(),
            floor: "floor".into(),
            qemu: "qemu".into(),
            solo5_hvt: "solo5-hvt".into(),
        };
        let guest = Guest {
            name: "g",
            kernel: "k.bin".into(),
            cmdline: "quiet",
            mem_mib: 4,
            ready_marker: None,
            must_print: None,
            status: 0,
            ukvm_args: vec!["--disk".into(), "d.iso".into()],
            qemu_args: vec![],
            cannot_run: vec![],
            why: "",
        };
        let c = programs.command(monitor, &guest);
        std::iter::once(c.get_program())
            .chain(c.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_sandbox_column_is_the_same_ukvm_with_seccomp_off() {
        let on = args(Monitor::Ukvm);
        let off = args(Monitor::UkvmNoSeccomp);
        assert_eq!(off, [on.clone(), vec!["--seccomp=off".into()]].concat());
        assert!(!on.iter().any(|a| a.starts_with("--seccomp")));
        assert_eq!(
            Monitor::from_name("ukvm-noseccomp"),
            Some(Monitor::UkvmNoSeccomp)
        );
    }
}
