//! Every kind of bad input gets a one-line error naming the problem and a
//! distinct exit status; none reaches a panic.

use std::path::{Path, PathBuf};
use ukvm_tests::{guest, kvm_available, run_ukvm, Outcome, TempDir};

const CONFIG: i32 = 240;
const KERNEL_READ: i32 = 241;
const KERNEL_INVALID: i32 = 242;
const NO_KVM: i32 = 243;

fn run_kernel(kernel: &Path, extra: &[&str]) -> Outcome {
    let mut args: Vec<std::ffi::OsString> = vec!["--kernel".into(), kernel.into()];
    args.extend(extra.iter().map(Into::into));
    run_ukvm(args)
}

/// Asserts a failed run: status, a single `ukvm: error:` line containing
/// every `needle`, nothing from the guest, no panic.
fn assert_error(out: &Outcome, status: i32, needles: &[&str]) {
    assert_eq!(out.status, Some(status), "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {out:?}");
    assert!(lines[0].starts_with("ukvm: error: "), "{out:?}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{needle:?} not in {:?}",
            lines[0]
        );
    }
    assert!(!out.stderr.contains("panicked"));
    assert!(out.stdout.is_empty(), "guest must not have run: {out:?}");
}

fn hello_bytes() -> Vec<u8> {
    std::fs::read(guest("hello")).unwrap()
}

/// File offset of the Multiboot header in `image`.
fn header_offset(image: &[u8]) -> usize {
    (0..8192)
        .step_by(4)
        .find(|&o| image[o..o + 4] == 0x1bad_b002u32.to_le_bytes())
        .expect("hello has a multiboot header")
}

fn get(image: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(image[off..off + 4].try_into().unwrap())
}

fn put(image: &mut [u8], off: usize, value: u32) {
    image[off..off + 4].copy_from_slice(&value.to_le_bytes());
}

/// hello with kludge field `index` (0 = header_addr .. 4 = entry_addr)
/// replaced by `f(old)`.
fn patched_hello(index: usize, f: impl Fn(u32) -> u32) -> Vec<u8> {
    let mut image = hello_bytes();
    let h = header_offset(&image);
    let off = h + 12 + 4 * index;
    let old = get(&image, off);
    put(&mut image, off, f(old));
    image
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn missing_and_empty_kernel_files() {
    let dir = TempDir::new("bad");
    let out = run_kernel(&dir.join("nope.bin"), &[]);
    assert_error(&out, KERNEL_READ, &["nope.bin", "No such file"]);
    let out = run_kernel(Path::new(dir.join("").as_path()), &[]);
    assert_error(&out, KERNEL_READ, &["Is a directory"]);
    let empty = write(&dir, "empty.bin", &[]);
    assert_error(
        &run_kernel(&empty, &[]),
        KERNEL_INVALID,
        &["empty.bin", "empty"],
    );
}

#[test]
fn images_without_a_usable_header() {
    let dir = TempDir::new("hdr");
    let junk = write(&dir, "junk.bin", &[0x55u8; 20000]);
    assert_error(
        &run_kernel(&junk, &[]),
        KERNEL_INVALID,
        &["junk.bin", "no supported kernel format"],
    );

    let mut bad_sum = hello_bytes();
    let h = header_offset(&bad_sum);
    let sum = get(&bad_sum, h + 8);
    put(&mut bad_sum, h + 8, sum ^ 1);
    let f = write(&dir, "badsum.bin", &bad_sum);
    assert_error(
        &run_kernel(&f, &[]),
        KERNEL_INVALID,
        &["checksum", &format!("{h:#x}")],
    );

    // The same header moved to 12 KiB into the file.
    let hello = hello_bytes();
    let mut far = vec![0u8; 12288];
    far.extend_from_slice(&hello[h..h + 32]);
    let f = write(&dir, "far.bin", &far);
    assert_error(&run_kernel(&f, &[]), KERNEL_INVALID, &["0x3000", "8 KiB"]);

    let truncated = write(&dir, "trunc.bin", &hello[..h + 20]);
    assert_error(&run_kernel(&truncated, &[]), KERNEL_INVALID, &["truncated"]);
}

#[test]
fn bad_kludge_fields_are_named() {
    let dir = TempDir::new("kludge");
    // load_end_addr before load_addr.
    let img = patched_hello(2, |_| 0x80000);
    let f = write(&dir, "loadend.bin", &img);
    assert_error(
        &run_kernel(&f, &[]),
        KERNEL_INVALID,
        &["load_end_addr", "0x80000"],
    );
    // Entry outside the image.
    let img = patched_hello(4, |_| 0x900000);
    let f = write(&dir, "entry.bin", &img);
    assert_error(
        &run_kernel(&f, &[]),
        KERNEL_INVALID,
        &["entry_addr", "0x900000", "outside"],
    );
    // A bss that ends past the end of a 16 MiB guest.
    let img = patched_hello(3, |_| 0x1800000);
    let f = write(&dir, "big.bin", &img);
    assert_error(
        &run_kernel(&f, &["--mem", "16"]),
        KERNEL_INVALID,
        &["does not fit", "--mem"],
    );
    // ...which boots once memory is large enough.
    if kvm_available() {
        let out = run_kernel(&f, &["--mem", "32", "--cmdline", "exit=5"]);
        assert_eq!(out.status, Some(5), "{out:?}");
    }
}

#[test]
fn memory_size_limits() {
    let hello = guest("hello");
    assert_error(
        &run_kernel(&hello, &["--mem", "0"]),
        CONFIG,
        &["--mem 0 MiB"],
    );
    assert_error(
        &run_kernel(&hello, &["--mem", "1"]),
        CONFIG,
        &["between 2 and 65536"],
    );
    assert_error(
        &run_kernel(&hello, &["--mem", "99999999"]),
        CONFIG,
        &["--mem 99999999"],
    );
    let out = run_kernel(&hello, &["--mem", "lots"]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert!(out.stderr.contains("--mem"));
}

#[test]
fn command_line_limits() {
    let hello = guest("hello");
    let long = "x".repeat(5000);
    assert_error(
        &run_kernel(&hello, &["--cmdline", &long]),
        CONFIG,
        &["--cmdline", "5000 bytes"],
    );
    // Non-UTF-8 is refused by argument parsing (usage error).
    use std::os::unix::ffi::OsStrExt;
    let out = run_ukvm([
        "--kernel".as_ref(),
        hello.as_os_str(),
        "--cmdline".as_ref(),
        std::ffi::OsStr::from_bytes(b"caf\xe9"),
    ]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert!(out.stderr.contains("UTF-8"), "{}", out.stderr);
}

/// Runs ukvm with `/dev` replaced by an empty tmpfs (no KVM device), in a
/// private mount namespace.
#[test]
fn missing_dev_kvm_is_reported() {
    assert!(
        ukvm_tests::is_root(),
        "this test needs root (a mount namespace)"
    );
    let script = format!(
        "mount -t tmpfs none /dev && exec {} --kernel {}",
        ukvm_tests::ukvm_bin().display(),
        guest("hello").display()
    );
    let out = ukvm_tests::run_with_limit(
        std::process::Command::new("unshare").args(["-m", "sh", "-c", &script]),
        ukvm_tests::RUN_LIMIT,
    );
    assert_error(&out, NO_KVM, &["/dev/kvm", "KVM is not available"]);
}

#[test]
fn dev_kvm_permission_is_reported() {
    assert!(
        ukvm_tests::is_root(),
        "this test needs root (to switch to an unprivileged user)"
    );
    // Copy binary and kernel where user nobody can reach them.
    let dir = TempDir::new("perm");
    let bin = dir.join("ukvm");
    std::fs::copy(ukvm_tests::ukvm_bin(), &bin).unwrap();
    let kernel = dir.join("hello.bin");
    std::fs::copy(guest("hello"), &kernel).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for p in [dir.join(""), bin.clone(), kernel.clone()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = ukvm_tests::run_with_limit(
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .arg("--kernel")
            .arg(&kernel),
        ukvm_tests::RUN_LIMIT,
    );
    assert_error(
        &out,
        NO_KVM,
        &["/dev/kvm", "Permission denied", "kvm' group"],
    );
}
