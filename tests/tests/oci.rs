//! `ukvm-oci` driven as an engine drives runc, with hand-built bundles of
//! our test guests: create -> start -> state -> kill -> delete, the OCI
//! hooks, the TAP and tc redirect on the container's veth, the cgroup, the
//! terminal, annotations, placeholders and delegation to runc. Bad input:
//! `oci_bad_input.rs`. Needs root and /dev/kvm.

use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use ukvm_tests::net::NetNs;
use ukvm_tests::oci::{
    can_run, cgroup_path, hook_order, net_bundle, pid_of, wait_exit, with_hooks, Bundle, PodNet,
    Runtime, HOOKS, LIMIT,
};

#[test]
fn lifecycle_of_a_guest_that_exits_with_7() {
    if !can_run() {
        return;
    }
    let rt = Runtime::new();
    let b = Bundle::new(
        "hello",
        Some(r#"{"kernel": "/hello.bin", "cmdline": "exit=7 hello"}"#),
    );
    let mut spec = Bundle::spec(json!([{"type": "network"}]));
    with_hooks(&mut spec, &b);
    b.write_config(&spec);

    let o = rt.create("c1", &b);
    assert_eq!(o.status, Some(0), "create: {:?}", o.last_log);
    let pid = pid_of(&b);
    let st = rt.state("c1");
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["pid"], pid, "{st}");
    assert_eq!(st["id"], "c1");
    assert_eq!(
        st["bundle"],
        b.path().canonicalize().unwrap().to_str().unwrap()
    );
    assert_eq!(
        hook_order(&b),
        ["prestart", "createRuntime", "createContainer"]
    );
    assert_eq!(b.stdout(), "", "the guest must not run before start");
    // The new network namespace has its loopback up, as runc leaves it.
    let lo = std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "-br", "link", "show", "lo"])
        .output()
        .expect("nsenter (util-linux)");
    let lo = String::from_utf8_lossy(&lo.stdout);
    assert!(
        lo.contains("LOOPBACK,UP"),
        "lo in the container's namespace: {lo:?}"
    );

    let o = rt.run(&["start", "c1"]);
    assert_eq!(o.status, Some(0), "start: {:?}", o.last_log);
    assert_eq!(
        wait_exit(pid, LIMIT),
        7,
        "the guest's exit status is the container's"
    );
    assert!(b.stdout().contains("exiting with 7"), "{}", b.stdout());
    // The kernel's name as the guest sees it: its path in the image.
    assert!(
        b.stdout().contains("raw cmdline: hello.bin exit=7 hello"),
        "{}",
        b.stdout()
    );
    assert_eq!(rt.state("c1")["status"], "stopped");

    let o = rt.run(&["kill", "c1", "TERM"]);
    assert_eq!(o.status, Some(1));
    assert!(o.error().contains("container not running"), "{}", o.error());

    let o = rt.run(&["delete", "c1"]);
    assert_eq!(o.status, Some(0), "delete: {:?}", o.last_log);
    assert!(!rt.container_dir("c1").exists(), "state directory left");
    assert_eq!(hook_order(&b), HOOKS, "hooks in the spec's order");
    for kind in HOOKS {
        let state: Value = serde_json::from_str(
            &std::fs::read_to_string(b.join(&format!("hook-{kind}.json"))).unwrap(),
        )
        .unwrap_or_else(|e| panic!("{kind} hook got no state JSON: {e}"));
        assert_eq!(state["id"], "c1", "{kind}: {state}");
        assert_eq!(state["ociVersion"], "1.0.2", "{kind}: {state}");
    }
    let created: Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("hook-prestart.json")).unwrap())
            .unwrap();
    assert_eq!(
        created["pid"], pid,
        "prestart hooks find the process (Docker's setkey needs it)"
    );
    // Unknown now: asked of runc, which does not know it either.
    let o = rt.run(&["state", "c1"]);
    assert_eq!(o.status, Some(1));
    assert!(o.error().contains("does not exist"), "{}", o.error());
}

fn udp_echo(ns: &NetNs, addr: &str) {
    let sock = ns.udp_socket();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let msg = b"ukvm-oci echo";
    sock.send_to(msg, (addr, 7777)).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = sock
        .recv_from(&mut buf)
        .expect("UDP echo from the container's address");
    assert_eq!(from.to_string(), format!("{addr}:7777"));
    assert_eq!(&buf[..n], msg);
}

#[test]
fn net_guest_answers_on_the_containers_address_and_delete_removes_its_tap() {
    if !can_run() {
        return;
    }
    let net = PodNet::new(Some("10.77.0.2/24"));
    let mac = net.mac();
    let rt = Runtime::new();
    let b = net_bundle(&net.pod);
    let id = "net-c1";
    assert_eq!(rt.create(id, &b).status, Some(0));
    let pid = pid_of(&b);
    let o = rt.run(&["start", id]);
    assert_eq!(o.status, Some(0), "start: {:?}", o.last_log);
    b.wait_for_line("ready", LIMIT);
    assert_eq!(rt.state(id)["status"], "running");
    let ps = rt.run(&["ps", "--format", "json", id]);
    assert_eq!(ps.stdout.trim(), format!("[{pid}]"));

    // In the spec's cgroup, in every hierarchy.
    let memcg = Path::new("/sys/fs/cgroup/memory").join(&cgroup_path(&net.pod)[1..]);
    let procs = std::fs::read_to_string(memcg.join("cgroup.procs")).unwrap_or_default();
    assert_eq!(procs.trim(), pid.to_string(), "cgroup {}", memcg.display());

    // The TAP and the redirects exist while it runs.
    let tap = "uknetc1";
    assert!(net.pod.ip(&["-br", "link"]).contains(tap), "no TAP {tap}");
    for dev in ["eth0", tap] {
        let f = net.pod.tc(&["filter", "show", "dev", dev, "ingress"]);
        assert!(
            f.contains("mirred") && f.contains("Redirect"),
            "{dev} ingress: {f}"
        );
    }
    assert!(
        b.stdout().contains(&mac),
        "guest NIC must use eth0's MAC {mac}: {}",
        b.stdout()
    );
    assert_eq!(
        net.host.ping("10.77.0.2", 5),
        5,
        "ping the container's address"
    );
    udp_echo(&net.host, "10.77.0.2");

    assert_eq!(rt.run(&["kill", id, "SIGTERM"]).status, Some(0));
    let status = wait_exit(pid, LIMIT);
    assert!(
        status == 0 || status == 128 + libc::SIGTERM,
        "exit status {status}"
    );
    assert_eq!(rt.state(id)["status"], "stopped");
    let o = rt.run(&["delete", id]);
    assert_eq!(o.status, Some(0), "delete: {:?}", o.last_log);

    // Gone: TAP, filters, state. Untouched: eth0 and its address.
    assert!(!net.pod.ip(&["-br", "link"]).contains(tap), "TAP left");
    assert!(
        !net.pod
            .tc(&["qdisc", "show", "dev", "eth0"])
            .contains("ingress"),
        "qdisc left"
    );
    assert!(net
        .pod
        .ip(&["-br", "addr", "show", "eth0"])
        .contains("10.77.0.2/24"));
    assert!(!rt.container_dir(id).exists());
    assert!(!memcg.exists(), "cgroup left");
    assert_eq!(hook_order(&b), HOOKS);
}

#[test]
fn version_and_features() {
    let rt = Runtime::new();
    let v = rt.run(&["--version"]);
    assert!(
        v.stdout.starts_with("ukvm-oci version ") && v.stdout.contains("spec: 1.0.2"),
        "{}",
        v.stdout
    );
    let f: Value = serde_json::from_str(&rt.run(&["features"]).stdout).expect("features JSON");
    assert_eq!(f["ociVersionMax"], "1.0.2");
    assert_eq!(f["hooks"].as_array().map(Vec::len), Some(6), "{f}");
}

#[test]
fn terminal_goes_through_the_console_socket() {
    use std::io::Read;
    use vmm_sys_util::sock_ctrl_msg::ScmSocket;
    if !can_run() {
        return;
    }
    let rt = Runtime::new();
    let b = Bundle::new(
        "hello",
        Some(r#"{"kernel": "/hello.bin", "cmdline": "on a tty"}"#),
    );
    let mut spec = Bundle::spec(json!([{"type": "network"}]));
    spec["process"]["terminal"] = json!(true);
    b.write_config(&spec);
    let sock_path = b.join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let receiver = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let (_, fd) = stream.recv_with_fd(&mut buf[..]).unwrap();
        fd.expect("a terminal master")
    });
    let (b_path, pid_path) = (b.path().to_str().unwrap(), b.join("pid"));
    let mut cmd = rt.command(&[
        "create",
        "--bundle",
        b_path,
        "--console-socket",
        sock_path.to_str().unwrap(),
        "--pid-file",
        pid_path.to_str().unwrap(),
        "tty1",
    ]);
    let o = rt.finish(&mut cmd);
    assert_eq!(o.status, Some(0), "create: {:?}", o.last_log);
    let master = receiver.join().unwrap();
    assert_eq!(rt.run(&["start", "tty1"]).status, Some(0));
    assert_eq!(wait_exit(pid_of(&b), LIMIT), 0);
    let mut out = Vec::new();
    let mut master = master;
    let _ = master.read_to_end(&mut out); // EIO once the slave side closed
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("cmdline: on a tty"),
        "terminal output: {text:?}"
    );
    assert_eq!(rt.run(&["delete", "tty1"]).status, Some(0));
}

#[test]
fn annotations_override_ukvm_json() {
    if !can_run() {
        return;
    }
    let rt = Runtime::new();
    let b = Bundle::new(
        "hello",
        Some(r#"{"kernel": "/missing.bin", "cmdline": "from file"}"#),
    );
    let mut spec = Bundle::spec(json!([{"type": "network"}]));
    spec["annotations"] =
        json!({"org.ukvm.kernel": "/hello.bin", "org.ukvm.cmdline": "exit=3 annotated"});
    b.write_config(&spec);
    assert_eq!(rt.create("ann", &b).status, Some(0));
    assert_eq!(rt.run(&["start", "ann"]).status, Some(0));
    assert_eq!(wait_exit(pid_of(&b), LIMIT), 3);
    assert!(
        b.stdout().contains("cmdline: exit=3 annotated"),
        "{}",
        b.stdout()
    );
    assert_eq!(
        rt.state("ann")["annotations"]["org.ukvm.kernel"],
        "/hello.bin"
    );
    assert_eq!(rt.run(&["delete", "ann"]).status, Some(0));
}

#[test]
fn other_bundles_and_ids_go_to_runc_unchanged() {
    let dir = ukvm_tests::TempDir::new("fake-runc");
    let script = dir.join("runc");
    let record = dir.join("args");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", record.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let rt = Runtime::new().env("UKVM_OCI_RUNC", script.to_str().unwrap());
    let b = Bundle::new("hello", None);
    let o = rt.run(&["create", "--bundle", b.path().to_str().unwrap(), "plain"]);
    assert_eq!(o.status, Some(0), "{:?}", o.last_log);
    assert_eq!(rt.run(&["kill", "plain", "9"]).status, Some(0));
    let args = std::fs::read_to_string(&record).unwrap();
    let root = rt.root().join("state");
    let log = rt.root().join("log.json");
    let prefix = format!(
        "--root {} --log {} --log-format json",
        root.display(),
        log.display()
    );
    assert_eq!(
        args,
        format!(
            "{prefix} create --bundle {} plain\n{prefix} kill plain 9\n",
            b.path().display()
        )
    );
    assert!(!rt.container_dir("plain").exists());
}

#[test]
fn state_paths_longer_than_a_socket_path_work() {
    if !can_run() {
        return;
    }
    // Docker's state directory plus a 64-digit id is over sun_path's 108
    // bytes: the start socket must not need its full path.
    let rt = Runtime::new();
    let id = "0123456789abcdef".repeat(6);
    assert!(rt.container_dir(&id).join("sock").as_os_str().len() > 108);
    let b = Bundle::new(
        "hello",
        Some(r#"{"kernel": "/hello.bin", "cmdline": "exit=5"}"#),
    );
    assert_eq!(rt.create(&id, &b).status, Some(0));
    let o = rt.run(&["start", &id]);
    assert_eq!(o.status, Some(0), "start: {:?}", o.last_log);
    assert_eq!(wait_exit(pid_of(&b), LIMIT), 5);
    assert_eq!(rt.run(&["delete", &id]).status, Some(0));
}

#[test]
fn cmdline_placeholders_are_filled_from_the_containers_interface() {
    if !can_run() {
        return;
    }
    let net = PodNet::new(Some("10.77.0.2/24"));
    let mac = net.mac();
    let rt = Runtime::new();
    let template =
        "exit=0 ip={{ip}} p={{prefix}} m={{netmask}} gw={{gateway}} mac={{mac}} dns={{dns}}";
    let json = json!({"kernel": "/hello.bin", "cmdline": template, "net": true}).to_string();
    let b = Bundle::new("hello", Some(&json));
    // Engines mount their own resolv.conf over the image's.
    std::fs::write(
        b.join("resolv.conf"),
        "search test\nnameserver 10.77.0.53\n",
    )
    .unwrap();
    let mut spec = Bundle::spec(json!([{"type": "network", "path": net.pod.path()}]));
    spec["mounts"] = json!([{"destination": "/etc/resolv.conf", "type": "bind",
                             "source": b.join("resolv.conf"), "options": ["rbind", "ro"]}]);
    b.write_config(&spec);
    assert_eq!(rt.create("fill", &b).status, Some(0));
    let o = rt.run(&["start", "fill"]);
    assert_eq!(o.status, Some(0), "start: {:?}", o.last_log);
    assert_eq!(wait_exit(pid_of(&b), LIMIT), 0);
    let want = format!("ip=10.77.0.2 p=24 m=255.255.255.0 gw=10.77.0.1 mac={mac} dns=10.77.0.53");
    assert!(
        b.stdout().contains(&want),
        "want {want:?} in:\n{}",
        b.stdout()
    );
    assert_eq!(rt.run(&["delete", "fill"]).status, Some(0));
    assert!(!net.pod.ip(&["-br", "link"]).contains("ukfill"), "TAP left");
}

#[test]
fn hvt_guest_gets_the_interface_through_its_manifest_name() {
    if !can_run() {
        return;
    }
    let net = PodNet::new(Some("10.77.0.2/24"));
    let rt = Runtime::new();
    let json = r#"{"kernel": "/hvt-net.bin", "net": "service", "cmdline": "ip={{ip}} pings=1000 wait=60"}"#;
    let b = Bundle::new("hvt-net", Some(json));
    b.write_config(&Bundle::spec(
        json!([{"type": "network", "path": net.pod.path()}]),
    ));
    assert_eq!(rt.create("hvt1", &b).status, Some(0));
    let o = rt.run(&["start", "hvt1"]);
    assert_eq!(o.status, Some(0), "start: {:?}", o.last_log);
    b.wait_for_line("ready", LIMIT);
    assert_eq!(net.host.ping("10.77.0.2", 3), 3);
    let want = format!("service handle=1 mtu=1500 mac={}", net.mac());
    assert!(
        b.stdout().contains(&want),
        "want {want:?} in:\n{}",
        b.stdout()
    );
    assert_eq!(rt.run(&["kill", "hvt1", "KILL"]).status, Some(0));
    wait_exit(pid_of(&b), LIMIT);
    assert_eq!(rt.run(&["delete", "hvt1"]).status, Some(0));
}
