//! End to end: containerd (ctr), Podman and Docker, from Debian's
//! packages, run an OCI image of the `net` test guest with `ukvm-oci` as
//! their runtime. Each test starts its own daemon with a private root,
//! state and socket, builds the image locally (buildah, no registry),
//! checks ping and UDP echo on the container's address (and through a
//! published port where the engine has them), stops and removes the
//! container, and checks that no TAP, veth, IP reservation, runtime
//! state or port rule is left. Needs root, /dev/kvm and the engines
//! (scripts/setup.sh installs them); a missing engine fails the test
//! with the package to install.

use std::process::{Command, Stdio};
use std::time::Duration;
use ukvm_tests::engines::{
    bridge_ports, free_udp_port, output, ping, require, run, udp_echo, unique, wait_for_line,
    wait_until, Bridge, Daemon, FileLock, Image, OnDrop, RemoveOnDrop,
};
use ukvm_tests::oci::runtime_bin;
use ukvm_tests::{is_root, kvm_available, TempDir};

const READY: Duration = Duration::from_secs(60);
const NET_JSON: &str = r#"{"kernel": "/net.bin", "cmdline": "ip={{ip}}", "net": true}"#;

fn can_run() -> bool {
    if !kvm_available() {
        return false;
    }
    assert!(is_root(), "the engine tests need root");
    true
}

/// Files in `dir` (recursively) other than those `keep` accepts.
fn leftovers(dir: &std::path::Path, keep: &dyn Fn(&str) -> bool) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !keep(n))
        .collect()
}

#[test]
fn containerd_ctr_runs_the_net_guest_with_cni() {
    if !can_run() {
        return;
    }
    require("containerd", "containerd");
    require("ctr", "containerd");
    assert!(
        std::path::Path::new("/opt/cni/bin/bridge").exists(),
        "ctr --cni needs the CNI plugins in /opt/cni/bin (containernetworking-plugins; \
         scripts/setup.sh links /opt/cni/bin to /usr/lib/cni)"
    );
    // ctr --cni reads the first network in /etc/cni/net.d: one test at a
    // time on this host may put its own first.
    let _lock = FileLock::acquire(std::path::Path::new("/tmp/ukvm-oci-ctr-cni.lock"));
    let image = Image::build("net", NET_JSON);
    let (tag, net) = unique();
    let dir = TempDir::new("containerd");
    let config = dir.join("config.toml");
    let sock = dir.join("sock");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {:?}\n[ttrpc]\n  address = {:?}\n",
            dir.join("root"),
            dir.join("state"),
            sock,
            dir.join("sock.ttrpc")
        ),
    )
    .unwrap();
    let conflist = format!("/etc/cni/net.d/05-{tag}.conflist");
    let ipam = dir.join("ipam");
    std::fs::create_dir_all("/etc/cni/net.d").unwrap();
    std::fs::write(
        &conflist,
        format!(
            r#"{{"cniVersion": "1.0.0", "name": "{tag}", "plugins": [{{"type": "bridge", "bridge": "{tag}",
              "isGateway": true, "ipam": {{"type": "host-local", "dataDir": {ipam:?},
              "ranges": [[{{"subnet": "{net}.0/24"}}]], "routes": [{{"dst": "0.0.0.0/0"}}]}}}}]}}"#
        ),
    )
    .unwrap();
    let _conf = RemoveOnDrop(conflist.into());
    let _bridge = Bridge::adopt(&tag);
    let mut daemon = Daemon::start(
        "containerd",
        Command::new("containerd").arg("--config").arg(&config),
        &dir.join("containerd.log"),
    );
    let ctr = || {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&sock);
        c
    };
    wait_until("containerd", Duration::from_secs(20), || {
        output(ctr().arg("version")).status.success().then_some(())
    });
    run(ctr().args(["images", "import"]).arg(&image.oci_archive));

    let runc_root = dir.join("runc-root");
    let id = format!("{tag}c");
    let mut task = ctr()
        .args(["run", "--rm", "--cni", "--runc-binary"])
        .arg(runtime_bin())
        .arg("--runc-root")
        .arg(&runc_root)
        .arg("--fifo-dir")
        .arg(dir.join("fifo"))
        .args([&image.name, &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctr run");
    // A failing assertion must not leave the task (and its shim) running.
    let _remove = OnDrop(|| {
        drop(output(ctr().args(["task", "kill", "-s", "KILL", &id])));
        drop(output(ctr().args(["task", "rm", "-f", &id])));
        drop(output(ctr().args(["containers", "rm", &id])));
    });
    wait_for_line(task.stdout.take().expect("stdout"), "ready", READY);
    let ip = format!("{net}.2");
    assert_eq!(ping(&ip, 3), 3, "ping {ip}");
    udp_echo(&format!("{ip}:7777"));
    assert_eq!(bridge_ports(&tag).len(), 1, "one veth on the bridge");

    run(ctr().args(["task", "kill", &id]));
    let status = task.wait().expect("ctr run exits");
    assert_eq!(status.code(), Some(143), "SIGTERM ends the guest with 143");
    assert_eq!(run(ctr().args(["containers", "ls", "-q"])).trim(), "");
    assert_eq!(bridge_ports(&tag), Vec::<String>::new(), "veth left");
    let reserved = leftovers(&ipam.join(&tag), &|n| {
        n == "lock" || n.starts_with("last_reserved_ip")
    });
    assert_eq!(reserved, Vec::<String>::new(), "IP reservation left");
    // The shim keeps one root per containerd namespace ("default").
    let state = runc_root.join("default");
    assert_eq!(
        leftovers(&state, &|_| false),
        Vec::<String>::new(),
        "runtime state left"
    );
    daemon.stop();
}

/// iptables rules (all tables) that mention `needle`.
fn iptables_rules_with(needle: &str) -> Vec<String> {
    let out = output(&mut Command::new("iptables-save"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

#[test]
fn podman_runs_the_net_guest_with_a_published_port() {
    if !can_run() {
        return;
    }
    require("podman", "podman");
    let image = Image::build("net", NET_JSON);
    let (tag, net) = unique();
    let dir = TempDir::new("podman");
    let (netdir, ipam) = (dir.join("networks"), dir.join("ipam"));
    std::fs::create_dir_all(&netdir).unwrap();
    std::fs::write(
        netdir.join(format!("{tag}.conflist")),
        format!(
            r#"{{"cniVersion": "0.4.0", "name": "{tag}", "plugins": [
              {{"type": "bridge", "bridge": "{tag}", "isGateway": true, "hairpinMode": true,
                "ipam": {{"type": "host-local", "dataDir": {ipam:?},
                "ranges": [[{{"subnet": "{net}.0/24", "gateway": "{net}.1"}}]],
                "routes": [{{"dst": "0.0.0.0/0"}}]}}}},
              {{"type": "portmap", "capabilities": {{"portMappings": true}}}}]}}"#
        ),
    )
    .unwrap();
    // This sandbox cannot raise rlimits: Podman's defaults would fail.
    let conf = dir.join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\n\
         [engine]\nruntime_supports_json = [\"ukvm-oci\"]\n",
    )
    .unwrap();
    let _bridge = Bridge::adopt(&tag);
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", &conf)
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--runroot")
            .arg(dir.join("run"))
            .arg("--tmpdir")
            .arg(dir.join("tmp"))
            .arg("--network-config-dir")
            .arg(&netdir)
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file", "--runtime"])
            .arg(runtime_bin())
            .args(args);
        c
    };
    run(&mut podman(&[
        "pull",
        "-q",
        &format!("oci-archive:{}", image.oci_archive.display()),
    ]));
    let port = free_udp_port();
    let name = format!("{tag}c");
    let publish = format!("{port}:7777/udp");
    let id = run(&mut podman(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &tag,
        "-p",
        &publish,
        &image.name,
    ]));
    let id = id.trim().to_string();
    // A failing assertion must not leave the container running.
    let _remove = OnDrop(|| drop(output(&mut podman(&["rm", "-f", &name]))));
    wait_until("the guest's ready line", READY, || {
        let logs = output(&mut podman(&["logs", &name]));
        String::from_utf8_lossy(&logs.stdout)
            .lines()
            .any(|l| l == "ready")
            .then_some(())
    });
    let ip = format!("{net}.2");
    assert_eq!(ping(&ip, 3), 3, "ping {ip}");
    udp_echo(&format!("{ip}:7777"));
    udp_echo(&format!("127.0.0.1:{port}"));

    run(&mut podman(&["stop", "-t", "10", &name]));
    let status = run(&mut podman(&[
        "inspect",
        "-f",
        "{{.State.ExitCode}}",
        &name,
    ]));
    assert_eq!(status.trim(), "143", "SIGTERM ends the guest with 143");
    run(&mut podman(&["rm", &name]));
    assert_eq!(bridge_ports(&tag), Vec::<String>::new(), "veth left");
    let reserved = leftovers(&ipam.join(&tag), &|n| {
        n == "lock" || n.starts_with("last_reserved_ip")
    });
    assert_eq!(reserved, Vec::<String>::new(), "IP reservation left");
    assert!(
        !std::path::Path::new("/run/ukvm-oci").join(&id).exists(),
        "runtime state left"
    );
    assert_eq!(
        iptables_rules_with(&ip),
        Vec::<String>::new(),
        "port rules left"
    );

    // Bad input through the engine: the runtime's one line reaches the
    // user, and nothing is left.
    let bad = Image::build("net", r#"{"kernel": "/../net.bin", "net": true}"#);
    run(&mut podman(&[
        "pull",
        "-q",
        &format!("oci-archive:{}", bad.oci_archive.display()),
    ]));
    let out = output(&mut podman(&["run", "--rm", "--network", &tag, &bad.name]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a kernel path out of the rootfs must fail"
    );
    assert!(
        err.contains("kernel \"/../net.bin\": '..' would leave the rootfs"),
        "podman said: {err}"
    );
    assert_eq!(
        run(&mut podman(&["ps", "-aq"])).trim(),
        "",
        "container left"
    );

    // -t: the console is a terminal from --console-socket; the guest's
    // exit status is the container's.
    let hello = Image::build(
        "hello",
        r#"{"kernel": "/hello.bin", "cmdline": "exit=4 on a tty"}"#,
    );
    run(&mut podman(&[
        "pull",
        "-q",
        &format!("oci-archive:{}", hello.oci_archive.display()),
    ]));
    let tty = format!("{tag}t");
    run(&mut podman(&[
        "run",
        "-d",
        "-t",
        "--network",
        "none",
        "--name",
        &tty,
        &hello.name,
    ]));
    assert_eq!(run(&mut podman(&["wait", &tty])).trim(), "4");
    let logs = run(&mut podman(&["logs", &tty]));
    assert!(
        logs.contains("cmdline: exit=4 on a tty\r\n"),
        "terminal output: {logs:?}"
    );
    run(&mut podman(&["rm", &tty]));
    assert_eq!(
        bridge_ports(&tag),
        Vec::<String>::new(),
        "veth left after the failed run"
    );
}

#[test]
fn docker_runs_the_net_guest_with_a_published_port() {
    if !can_run() {
        return;
    }
    require("dockerd", "docker.io");
    // Debian's CLI: another `docker` may come first on PATH.
    let cli = "/usr/bin/docker";
    assert!(
        std::path::Path::new(cli).exists(),
        "{cli} missing (apt-get install docker.io)"
    );
    let image = Image::build("net", NET_JSON);
    let (tag, net) = unique();
    let dir = TempDir::new("docker");
    let bridge = Bridge::new(&tag, &format!("{net}.1/24"));
    let sock = dir.join("docker.sock");
    // No iptables or ip_forward changes (published ports go through
    // docker-proxy), so the daemon leaves the host's tables as they were.
    let mut daemon = Daemon::start(
        "dockerd",
        Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args([
                "--bridge",
                &bridge.0,
                "--iptables=false",
                "--ip-forward=false",
            ])
            .args(["--storage-driver", "vfs", "--add-runtime"])
            .arg(format!("ukvm-oci={}", runtime_bin().display())),
        &dir.join("dockerd.log"),
    );
    let docker = |args: &[&str]| {
        let mut c = Command::new(cli);
        c.arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(args);
        c
    };
    wait_until("dockerd", Duration::from_secs(30), || {
        output(&mut docker(&["version"]))
            .status
            .success()
            .then_some(())
    });
    run(&mut docker(&[
        "load",
        "-q",
        "-i",
        image.docker_archive.to_str().unwrap(),
    ]));
    let port = free_udp_port();
    let name = format!("{tag}c");
    let publish = format!("127.0.0.1:{port}:7777/udp");
    let id = run(&mut docker(&[
        "run",
        "-d",
        "--runtime",
        "ukvm-oci",
        "--name",
        &name,
        "-p",
        &publish,
        &image.name,
    ]));
    let id = id.trim().to_string();
    // A failing assertion must not leave the container (and its shim) running.
    let _remove = OnDrop(|| drop(output(&mut docker(&["rm", "-f", &name]))));
    wait_until("the guest's ready line", READY, || {
        let logs = output(&mut docker(&["logs", &name]));
        String::from_utf8_lossy(&logs.stdout)
            .lines()
            .any(|l| l == "ready")
            .then_some(())
    });
    let ip = run(&mut docker(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.IPAddress}}",
        &name,
    ]));
    let ip = ip.trim().to_string();
    assert!(ip.starts_with(&format!("{net}.")), "container IP {ip}");
    assert_eq!(ping(&ip, 3), 3, "ping {ip}");
    udp_echo(&format!("{ip}:7777"));
    udp_echo(&format!("127.0.0.1:{port}"));

    run(&mut docker(&["stop", "-t", "10", &name]));
    let status = run(&mut docker(&[
        "inspect",
        "-f",
        "{{.State.ExitCode}}",
        &name,
    ]));
    assert_eq!(status.trim(), "143", "SIGTERM ends the guest with 143");
    run(&mut docker(&["rm", &name]));
    assert_eq!(bridge_ports(&tag), Vec::<String>::new(), "veth left");
    // dockerd gives every runtime the root exec-root/runtime-runc/moby.
    let root = dir.join("exec/runtime-runc/moby");
    assert!(root.is_dir(), "no runtime root at {}", root.display());
    assert!(
        !root.join(&id).exists(),
        "runtime state left in {}",
        root.display()
    );
    daemon.stop();
}

/// Kubernetes has no kubelet here: check that containerd accepts the
/// README's CRI configuration and shows the ukvm runtime handler.
#[test]
fn containerd_accepts_the_documented_cri_config() {
    require("containerd", "containerd");
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../oci/examples/containerd-cri.toml");
    let dump = run(Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .args(["config", "dump"]));
    let section = dump
        .split("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.ukvm]")
        .nth(1)
        .unwrap_or_else(|| panic!("no ukvm runtime in containerd's config dump:\n{dump}"));
    for line in [
        "pod_annotations = [\"org.ukvm.*\"]",
        "runtime_type = \"io.containerd.runc.v2\"",
        "BinaryName = \"/usr/local/bin/ukvm-oci\"",
    ] {
        assert!(section.contains(line), "{line} missing from:\n{section}");
    }
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    let example = std::fs::read_to_string(&config).unwrap();
    let body: String = example
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        readme.contains(body.trim()),
        "README's CRI config differs from oci/examples/containerd-cri.toml"
    );
}
