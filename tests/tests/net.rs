//! virtio-net over TAP: the `net` test guest answers ARP, ICMP echo and
//! UDP echo on its address. Each test makes its own network namespace and
//! TAPs (removed when the test ends, pass or fail) and needs root.

use std::time::Duration;
use ukvm_tests::net::{NetNs, RunningGuest};
use ukvm_tests::{guest, is_root, kvm_available, run_ukvm, TempDir};

const BOOT: Duration = Duration::from_secs(30);

fn can_run() -> bool {
    if !kvm_available() {
        return false;
    }
    assert!(is_root(), "the network tests need root (namespaces, TAPs)");
    true
}

fn boot(ns: &NetNs, nets: &[String], cmdline: &str) -> RunningGuest {
    let kernel = guest("net");
    let mut args = vec!["--kernel", kernel.to_str().unwrap(), "--cmdline", cmdline];
    for n in nets {
        args.extend(["--net", n.as_str()]);
    }
    let mut g = ns.spawn_ukvm(&args);
    g.wait_for("ready", BOOT);
    g
}

/// Sends datagrams of `size` bytes and checks each echo byte for byte.
fn udp_echo(ns: &NetNs, addr: &str, size: usize, count: usize) {
    let sock = ns.udp_socket();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; 65536];
    for i in 0..count {
        let msg: Vec<u8> = (0..size).map(|j| (j * 7 + i * 13) as u8).collect();
        sock.send_to(&msg, (addr, 7777)).unwrap();
        let (n, from) = sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no echo of datagram {i} ({size} bytes): {e}"));
        assert_eq!(from.to_string(), format!("{addr}:7777"));
        assert_eq!(n, size, "echo length of datagram {i}");
        assert!(
            buf[..n] == msg[..],
            "echo of datagram {i} ({size} bytes) differs"
        );
    }
}

#[test]
fn hundred_pings_all_answered() {
    if !can_run() {
        return;
    }
    let ns = NetNs::new();
    let tap = ns.add_tap("10.0.0.1/24", 1500);
    let g = boot(&ns, std::slice::from_ref(&tap), "ip=10.0.0.2");
    let line = g.stdout();
    assert!(
        line.contains("net0: slot") && line.contains("link up"),
        "{line}"
    );
    assert!(
        line.contains("hdr 10"),
        "legacy header without MRG_RXBUF: {line}"
    );
    assert_eq!(ns.ping("10.0.0.2", 100), 100, "stderr: {}", g.stderr());
    assert_eq!(g.stderr(), "", "ukvm said something");
}

#[test]
fn udp_echo_64_and_1400_bytes() {
    if !can_run() {
        return;
    }
    let ns = NetNs::new();
    let tap = ns.add_tap("10.0.0.1/24", 1500);
    let _g = boot(&ns, &[tap], "ip=10.0.0.2");
    udp_echo(&ns, "10.0.0.2", 64, 20);
    udp_echo(&ns, "10.0.0.2", 1400, 20);
}

#[test]
fn udp_echo_with_mergeable_buffers_header() {
    if !can_run() {
        return;
    }
    let ns = NetNs::new();
    let tap = ns.add_tap("10.0.0.1/24", 1500);
    let g = boot(&ns, &[tap], "ip=10.0.0.2 mrg");
    assert!(g.stdout().contains("hdr 12"), "{}", g.stdout());
    udp_echo(&ns, "10.0.0.2", 64, 10);
    udp_echo(&ns, "10.0.0.2", 1400, 10);
    assert_eq!(ns.ping("10.0.0.2", 10), 10);
}

#[test]
fn jumbo_udp_echo_with_mtu_9000() {
    if !can_run() {
        return;
    }
    let ns = NetNs::new();
    let tap = ns.add_tap("10.0.0.1/24", 9000);
    let g = boot(&ns, &[format!("{tap},mtu=9000")], "ip=10.0.0.2");
    assert!(g.stdout().contains("mtu 9000"), "{}", g.stdout());
    udp_echo(&ns, "10.0.0.2", 8900, 10);
    udp_echo(&ns, "10.0.0.2", 64, 5);
}

#[test]
fn modern_interface_with_version_1_header_and_jumbo_frames() {
    if !can_run() {
        return;
    }
    let ns = NetNs::new();
    let tap = ns.add_tap("10.0.0.1/24", 9000);
    let g = boot(&ns, &[format!("{tap},mtu=9000")], "ip=10.0.0.2 modern");
    let out = g.stdout();
    assert!(
        out.contains(" modern\n"),
        "driven through the memory BAR: {out}"
    );
    assert!(out.contains("hdr 12") && out.contains("mtu 9000"), "{out}");
    assert_eq!(ns.ping("10.0.0.2", 10), 10);
    udp_echo(&ns, "10.0.0.2", 64, 10);
    udp_echo(&ns, "10.0.0.2", 1400, 10);
    udp_echo(&ns, "10.0.0.2", 8900, 5);
    assert_eq!(g.stderr(), "", "ukvm said something");
}

/// The guest's handlers return with iret by default (ukvm completes it);
/// `noiret` is the path QEMU needs on this machine (scripts/net-bench.sh).
#[test]
fn interrupt_return_without_iret_still_answers() {
    if !can_run() {
        return;
    }
    let ns = NetNs::new();
    let tap = ns.add_tap("10.0.0.1/24", 1500);
    let _g = boot(&ns, &[tap], "ip=10.0.0.2 noiret");
    assert_eq!(ns.ping("10.0.0.2", 10), 10);
    udp_echo(&ns, "10.0.0.2", 64, 5);
}

#[test]
fn two_nics_answer_on_their_own_addresses() {
    if !can_run() {
        return;
    }
    let ns = NetNs::new();
    let a = ns.add_tap("10.0.1.1/24", 1500);
    let b = ns.add_tap("10.0.2.1/24", 1500);
    let mac = "02:00:00:00:00:b2";
    let g = boot(&ns, &[a, format!("{b},mac={mac}")], "ip=10.0.1.2,10.0.2.2");
    let out = g.stdout();
    assert!(out.contains("net0: ") && out.contains("net1: "), "{out}");
    assert!(
        out.contains(&format!("mac {mac} ")),
        "second NIC's MAC: {out}"
    );
    assert_eq!(ns.ping("10.0.1.2", 20), 20);
    assert_eq!(ns.ping("10.0.2.2", 20), 20);
    udp_echo(&ns, "10.0.1.2", 200, 5);
    udp_echo(&ns, "10.0.2.2", 300, 5);
}

#[test]
fn tap_disappearing_is_reported_once_and_the_vm_keeps_running() {
    if !can_run() {
        return;
    }
    let ns = NetNs::new();
    let tap = ns.add_tap("10.0.0.1/24", 1500);
    let mut g = boot(&ns, std::slice::from_ref(&tap), "ip=10.0.0.2");
    assert_eq!(ns.ping("10.0.0.2", 5), 5);
    ns.delete_tap(&tap);
    std::thread::sleep(Duration::from_millis(500));
    assert!(g.running(), "ukvm exited; stderr: {}", g.stderr());
    let err = g.stderr();
    assert_eq!(err.matches("TAP failed").count(), 1, "stderr: {err}");
    assert!(err.contains(&tap) && err.contains("link is down"), "{err}");
}

fn bad_net(net: &str) -> String {
    let out = run_ukvm(["--kernel", guest("hello").to_str().unwrap(), "--net", net]);
    assert_ne!(out.status, Some(0), "--net {net:?} was accepted");
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    out.stderr
}

#[test]
fn bad_net_options_are_named() {
    if !kvm_available() {
        return;
    }
    assert!(bad_net("").contains("needs a TAP interface name"));
    assert!(bad_net(",mac=02:00:00:00:00:01").contains("needs a TAP interface name"));
    let e = bad_net("tap0,mac=02:00:00:00:00");
    assert!(e.contains("bad MAC address '02:00:00:00:00'"), "{e}");
    assert!(bad_net("tap0,mac=01:00:00:00:00:00").contains("bad MAC"));
    assert!(bad_net("tap0,mtu=20").contains("bad mtu"));
    let e = bad_net("ukvm-nosuch0");
    assert!(e.contains("ip tuntap add ukvm-nosuch0 mode tap"), "{e}");
}

/// ukvm's exit leaves the VM's teardown, and the TAP's release, to a
/// helper; a VM started right after on the same TAP must still attach
/// (without the busy-TAP retry, 7 in 60 failed).
#[test]
fn a_tap_can_be_reused_as_soon_as_ukvm_has_exited() {
    if !can_run() {
        return;
    }
    let ns = NetNs::new();
    let tap = ns.add_tap("10.0.0.1/24", 1500);
    let kernel = guest("hello");
    let dir = TempDir::new("tap-free");
    let log = dir.join("log");
    // A shell loop in the namespace starts each run as soon as the last
    // is reaped (through `ip netns exec` each time, the gap hid the race),
    // and stderr goes to a file: waiting for a pipe's end would wait for
    // the helper too.
    let script = r#"for i in $(seq 1 40); do
        "$0" --kernel "$1" --cmdline "quiet exit=3" --net "$2" >/dev/null 2>>"$3"
        s=$?; [ $s -eq 3 ] || echo "run $i: status $s" >>"$3"
    done"#;
    let status = ns
        .command("sh")
        .args(["-c", script, ukvm_tests::ukvm_bin().to_str().unwrap()])
        .args([kernel.to_str().unwrap(), &tap, log.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let errors = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(errors.is_empty(), "{errors}");
}

#[test]
fn busy_tap_is_refused() {
    if !can_run() {
        return;
    }
    let ns = NetNs::new();
    let tap = ns.add_tap("10.0.0.1/24", 1500);
    let _first = boot(&ns, std::slice::from_ref(&tap), "ip=10.0.0.2");
    let out = ns
        .command(ukvm_tests::ukvm_bin().to_str().unwrap())
        .args(["--kernel", guest("hello").to_str().unwrap(), "--net", &tap])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("busy"), "{err}");
}
