//! The guests the benchmark boots, and how each monitor is told to boot
//! them. A guest that needs a disk or a NIC adds its extra arguments here.

use std::path::{Path, PathBuf};

/// One guest and what proves it ran.
pub struct Guest {
    /// Name in the report.
    pub name: &'static str,
    /// Kernel image.
    pub kernel: PathBuf,
    /// Kernel command line.
    pub cmdline: &'static str,
    /// Guest memory, MiB (the same for every monitor).
    pub mem_mib: u64,
    /// The guest's first line; "ready" is when it reaches our pipe.
    pub ready_line: Option<&'static str>,
    /// Output the guest must print (checks that it really ran).
    pub must_print: Option<&'static str>,
    /// Process exit status every monitor must return.
    pub status: i32,
    /// Extra ukvm arguments (disks, NICs).
    pub ukvm_args: Vec<String>,
    /// Extra QEMU arguments (disks, NICs).
    pub qemu_args: Vec<String>,
    /// Why this guest is in the list.
    pub why: &'static str,
}

/// The benchmark's guests, built from tests/guests into `dir`.
///
/// Both hello variants exit through port 0x501 (`exit=3`: odd statuses
/// use QEMU's isa-debug-exit) so every monitor ends them the same way.
/// Guests with a disk (#3) and a NIC (#4) go here when those land.
pub fn all(dir: &Path) -> Vec<Guest> {
    vec![
        Guest {
            name: "hello-quiet",
            kernel: dir.join("hello.bin"),
            cmdline: "quiet exit=3",
            mem_mib: 64,
            ready_line: None,
            must_print: None,
            status: 3,
            ukvm_args: vec![],
            qemu_args: vec![],
            why: "no output: writes the ready port and exits; pure monitor \
                  start-up and teardown cost, comparable with the floor",
        },
        Guest {
            name: "hello",
            kernel: dir.join("hello.bin"),
            cmdline: "exit=3",
            mem_mib: 64,
            ready_line: Some("ukvm hello unikernel"),
            must_print: Some("exiting with 3"),
            status: 3,
            ukvm_args: vec![],
            qemu_args: vec![],
            why: "prints its boot information (~15 lines, one exit per byte and \
                  per status poll) then exits; ready = its first line in our pipe",
        },
    ]
}
