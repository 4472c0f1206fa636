//! Unikraft 0.17.0 hello-world images built by others (`../shared/unikraft`,
//! see its README.txt): they must print "Hello world!" and their arguments.
//! Each boots differently: Multiboot from ELF32 program headers, Multiboot
//! needing the hardware RNG, and Firecracker's Linux 64-bit boot.

use ukvm_tests::{kvm_available, run_ukvm, shared_image, Outcome};

fn boot(image: &str, cmdline: &str) -> (String, Outcome) {
    boot_with(image, &["--cmdline", cmdline])
}

/// Boots `image` with the ukvm options `args`; returns its path too.
fn boot_with(image: &str, args: &[&str]) -> (String, Outcome) {
    let path = shared_image("unikraft", image).display().to_string();
    let out = run_ukvm(["--kernel", path.as_str()].iter().chain(args));
    (path, out)
}

/// The line helloworld prints with its argv, each word quoted.
fn arguments(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    format!("Arguments:  {}", quoted.join(" "))
}

fn host_has_rdrand_and_rdseed() -> bool {
    let leaf1 = std::arch::x86_64::__cpuid(1);
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    leaf1.ecx & (1 << 30) != 0 && leaf7.ebx & (1 << 18) != 0
}

#[test]
fn multiboot_image_prints_hello_and_takes_the_kernel_name_as_argv0() {
    if !kvm_available() {
        return;
    }
    let (path, out) = boot("helloworld_qemu-x86_64", "arg1 arg2");
    let lines = out.lines();
    assert!(lines.contains(&"Hello world!"), "{out:?}");
    // Like QEMU's -kernel/-append: argv[0] is the kernel file name.
    let want = arguments(&[&path, "arg1", "arg2"]);
    assert!(lines.contains(&want.as_str()), "want {want:?}: {out:?}");
    // main() returned: Unikraft powers off through PIIX4's PM1a_CNT.
    assert_eq!(out.status, Some(0), "{out:?}");
}

#[test]
fn multiboot_image_also_runs_with_kvms_irqchip_and_pit() {
    if !kvm_available() {
        return;
    }
    // Unikraft calibrates its TSC against the PIT: ukvm's own 8254 by
    // default (the test above), KVM's with --irqchip kvm.
    let (path, out) = boot_with(
        "helloworld_qemu-x86_64",
        &["--irqchip", "kvm", "--cmdline", "pit"],
    );
    assert!(out.lines().contains(&"Hello world!"), "{out:?}");
    let want = arguments(&[&path, "pit"]);
    assert!(out.lines().contains(&want.as_str()), "{out:?}");
    assert_eq!(out.status, Some(0), "{out:?}");
}

#[test]
fn rng_image_runs_where_the_cpu_has_rdrand_and_rdseed() {
    if !kvm_available() {
        return;
    }
    let (path, out) = boot("helloworld-hwrng_qemu-x86_64", "rng");
    if host_has_rdrand_and_rdseed() {
        assert!(out.lines().contains(&"Hello world!"), "{out:?}");
        let want = arguments(&[&path, "rng"]);
        assert!(out.lines().contains(&want.as_str()), "{out:?}");
        assert_eq!(out.status, Some(0), "{out:?}");
    } else {
        // Unikraft's own refusal, not a ukvm error.
        assert!(
            out.stdout.contains("Could not initialize the HWRNG"),
            "{out:?}"
        );
        assert!(!out.stderr.contains("ukvm: error"), "{out:?}");
    }
}

#[test]
fn firecracker_image_boots_through_the_linux_64_bit_protocol() {
    if !kvm_available() {
        return;
    }
    // The Linux protocol passes the command line as it is (as Firecracker
    // does): its first word is argv[0].
    let (_, out) = boot("helloworld_fc-x86_64", "helloworld arg1 arg2");
    let lines = out.lines();
    assert!(lines.contains(&"Hello world!"), "{out:?}");
    let want = arguments(&["helloworld", "arg1", "arg2"]);
    assert!(lines.contains(&want.as_str()), "want {want:?}: {out:?}");
    assert_eq!(out.status, Some(0), "{out:?}");
}
