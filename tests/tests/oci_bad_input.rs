//! `ukvm-oci` given bad input: each case fails with one clear line in the
//! runc-format `--log` file and a non-zero status, and leaves no process,
//! TAP or state directory behind. Needs root and /dev/kvm.

use serde_json::{json, Value};
use std::path::Path;
use ukvm_tests::oci::{can_run, net_bundle, pid_of, wait_exit, Bundle, PodNet, Runtime, LIMIT};

/// Creates a bundle from `ukvm_json` (and `setup` on its rootfs) and
/// checks create fails with `expected` in the log and leaves nothing.
fn create_fails(ukvm_json: Option<&str>, setup: impl Fn(&Path, &mut Value), expected: &str) {
    let rt = Runtime::new();
    let b = Bundle::new("hello", ukvm_json);
    let mut spec = Bundle::spec(json!([{"type": "network"}]));
    setup(&b.join("rootfs"), &mut spec);
    b.write_config(&spec);
    let o = rt.create("bad", &b);
    assert_eq!(o.status, Some(1), "create must fail ({expected})");
    let msg = o.error();
    assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
    assert!(!msg.contains('\n'), "one line: {msg:?}");
    assert!(
        !rt.container_dir("bad").exists(),
        "state left for {expected}"
    );
}

#[test]
fn bad_ukvm_json_fails_clearly() {
    if !can_run() {
        return;
    }
    let none = |_: &Path, _: &mut Value| {};
    create_fails(Some("{\"kernel\": "), none, "/ukvm.json: invalid JSON");
    create_fails(Some("[1]"), none, "expected a JSON object");
    create_fails(
        Some(r#"{"kernel": "/hello.bin", "mem": 8}"#),
        none,
        "unknown field `mem`",
    );
    create_fails(Some(r#"{"cmdline": "x"}"#), none, "no kernel");
    create_fails(
        Some(r#"{"kernel": "/../../etc/passwd"}"#),
        none,
        "'..' would leave the rootfs",
    );
    create_fails(
        Some(r#"{"kernel": "/nope.bin"}"#),
        none,
        "kernel \"/nope.bin\": not found",
    );
    create_fails(
        Some(r#"{"kernel": "/k"}"#),
        |r, _| std::os::unix::fs::symlink("/bin/sh", r.join("k")).unwrap(),
        "is absolute: it would leave the rootfs",
    );
    create_fails(
        Some(r#"{"kernel": "/hello.bin", "disks": ["/../x.iso"]}"#),
        none,
        "disk \"/../x.iso\"",
    );
    create_fails(
        Some(r#"{"kernel": "/hello.bin", "cmdline": "{{ipv6}}", "net": true}"#),
        none,
        "unknown placeholder {{ipv6}}",
    );
    create_fails(
        Some(r#"{"kernel": "/hello.bin", "cmdline": "ip={{ip}}"}"#),
        none,
        "\"net\" is not enabled",
    );
    create_fails(
        None,
        |_, spec| spec["annotations"] = json!({"org.ukvm.mem_mib": "32"}),
        "no /ukvm.json and no org.ukvm.kernel annotation",
    );
    create_fails(
        Some(r#"{"kernel": "/hello.bin", "net": true}"#),
        |_, spec| spec["linux"]["namespaces"] = json!([]),
        "needs a network namespace",
    );
}

#[test]
fn same_id_twice_is_refused_and_the_first_survives() {
    if !can_run() {
        return;
    }
    let rt = Runtime::new();
    let json = r#"{"kernel": "/hello.bin"}"#;
    let (b1, b2) = (
        Bundle::new("hello", Some(json)),
        Bundle::new("hello", Some(json)),
    );
    assert_eq!(rt.create("twin", &b1).status, Some(0));
    let o = rt.create("twin", &b2);
    assert_eq!(o.status, Some(1));
    assert!(
        o.error().contains("container with id twin already exists"),
        "{}",
        o.error()
    );
    assert_eq!(rt.state("twin")["status"], "created");
    assert_eq!(rt.run(&["delete", "twin"]).status, Some(0));
    assert!(!rt.container_dir("twin").exists());
}

#[test]
fn bundle_removed_before_start_fails_start() {
    if !can_run() {
        return;
    }
    let rt = Runtime::new();
    let b = Bundle::new("hello", Some(r#"{"kernel": "/hello.bin"}"#));
    assert_eq!(rt.create("gone", &b).status, Some(0));
    let pid = pid_of(&b);
    let moved = b.path().with_extension("moved");
    std::fs::rename(b.path(), &moved).unwrap();
    let o = rt.run(&["start", "gone"]);
    std::fs::rename(&moved, b.path()).unwrap();
    assert_eq!(o.status, Some(1));
    assert!(
        o.error().contains("disappeared before start"),
        "{}",
        o.error()
    );
    wait_exit(pid, LIMIT);
    assert_eq!(rt.run(&["delete", "gone"]).status, Some(0));
    assert!(!rt.container_dir("gone").exists());
}

#[test]
fn unusable_dev_kvm_fails_create() {
    if !can_run() {
        return;
    }
    let rt = Runtime::new();
    let b = Bundle::new("hello", Some(r#"{"kernel": "/hello.bin"}"#));
    // In a private mount namespace, /dev/kvm is /dev/null.
    let runtime = rt.command(&[]).get_program().to_owned();
    let args: Vec<_> = rt
        .command(&["create", "--bundle", b.path().to_str().unwrap(), "nokvm"])
        .get_args()
        .map(|a| a.to_owned())
        .collect();
    let mut cmd = std::process::Command::new("unshare");
    cmd.args([
        "-m",
        "sh",
        "-c",
        "mount --bind /dev/null /dev/kvm && exec \"$@\"",
        "sh",
    ])
    .arg(runtime)
    .args(args);
    let o = rt.finish(&mut cmd);
    assert_eq!(o.status, Some(1));
    assert!(
        o.error().contains("/dev/kvm: not a KVM device"),
        "{}",
        o.error()
    );
    assert!(!rt.container_dir("nokvm").exists());
}

#[test]
fn a_failing_create_hook_fails_create_and_leaves_nothing() {
    if !can_run() {
        return;
    }
    let rt = Runtime::new();
    let b = Bundle::new("hello", Some(r#"{"kernel": "/hello.bin"}"#));
    let mut spec = Bundle::spec(json!([{"type": "network"}]));
    let dir = b.path().display();
    let script = format!("cat > {dir}/hook-state.json; echo no network for you >&2; exit 3");
    spec["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]});
    b.write_config(&spec);
    let o = rt.create("hooked", &b);
    assert_eq!(o.status, Some(1));
    let msg = o.error();
    assert!(
        msg.contains("createRuntime hook /bin/sh: failed (exit status: 3): no network for you"),
        "{msg}"
    );
    assert!(!rt.container_dir("hooked").exists(), "state left");
    assert!(
        !b.join("pid").exists(),
        "--pid-file written for a failed create"
    );
    // The init process the hook was told about was killed (we reap it:
    // this test process is the subreaper, as an engine's shim is).
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("hook-state.json")).unwrap()).unwrap();
    let init = state["pid"].as_i64().expect("pid in the hook's state") as i32;
    assert_eq!(wait_exit(init, LIMIT), 128 + libc::SIGKILL);
}

#[test]
fn no_ipv4_address_fails_start_and_leaves_no_tap() {
    if !can_run() {
        return;
    }
    let net = PodNet::new(None);
    let rt = Runtime::new();
    let b = net_bundle(&net.pod);
    assert_eq!(rt.create("noip", &b).status, Some(0));
    let pid = pid_of(&b);
    let o = rt.run(&["start", "noip"]);
    assert_eq!(o.status, Some(1));
    assert!(
        o.error().contains("interface eth0 has no IPv4 address"),
        "{}",
        o.error()
    );
    wait_exit(pid, LIMIT);
    assert!(!net.pod.ip(&["-br", "link"]).contains("uknoip"), "TAP left");
    assert_eq!(rt.run(&["delete", "noip"]).status, Some(0));
    assert!(!rt.container_dir("noip").exists());
}
