//! The `ukvm-oci` command: runc's command line, for unikernels.

use clap::{Parser, Subcommand};
use liboci_cli::{CommonCmd, GlobalOpts, StandardCmd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use ukvm_oci::create::{self, Bundle, CreateArgs};
use ukvm_oci::log::Log;
use ukvm_oci::state::{is_ours, DEFAULT_ROOT, OCI_VERSION};
use ukvm_oci::{commands, delegate, init, Error, Result};

const AFTER_HELP: &str = "\
A bundle whose rootfs holds /ukvm.json, or whose spec has org.ukvm.*
annotations, runs as a unikernel under ukvm; any other bundle, and any
container this runtime did not create, is passed to runc unchanged
($UKVM_OCI_RUNC, else runc on PATH). ukvm is $UKVM_OCI_UKVM, else the
ukvm next to ukvm-oci, else on PATH.

Exit status: 0 on success, 1 on any error (written to --log, in runc's
JSON format with --log-format json).";

#[derive(Parser)]
#[command(name = "ukvm-oci", about = "OCI runtime for unikernels under ukvm", after_help = AFTER_HELP)]
#[command(disable_version_flag = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalOpts,
    /// Print the version and the OCI runtime spec version.
    #[arg(long, short = 'v')]
    version: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    #[command(flatten)]
    Standard(Box<StandardCmd>),
    #[command(flatten)]
    Common(Box<CommonCmd>),
    /// The container's process before start (internal).
    #[command(name = "__init", hide = true)]
    Init { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = Log {
        file: cli.global.log.clone(),
        json: cli.global.log_format.as_deref() == Some("json"),
    };
    if cli.version {
        println!(
            "ukvm-oci version {}\nspec: {OCI_VERSION}",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        log.error("no command given (see ukvm-oci --help)");
        return ExitCode::FAILURE;
    };
    if let Cmd::Init { dir } = &command {
        return init::main(dir);
    }
    let root = cli
        .global
        .root
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    match dispatch(command, &cli.global, &root, &log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log.error(&e.to_string());
            ExitCode::FAILURE
        }
    }
}

/// Runs runc in our place when `id` is not ours.
fn ours_or_runc(root: &Path, id: &str) -> Result<()> {
    if is_ours(root, id) {
        Ok(())
    } else {
        Err(delegate::exec_runc())
    }
}

fn dispatch(command: Cmd, global: &GlobalOpts, root: &Path, log: &Log) -> Result<()> {
    match command {
        Cmd::Standard(cmd) => match *cmd {
            StandardCmd::Create(c) => {
                let bundle = Bundle::read(&c.bundle)?;
                if !bundle.is_unikernel() {
                    return Err(delegate::exec_runc());
                }
                let args = CreateArgs {
                    root,
                    id: &c.container_id,
                    bundle: &c.bundle,
                    pid_file: c.pid_file.as_deref(),
                    console_socket: c.console_socket.as_deref(),
                    systemd_cgroup: global.systemd_cgroup,
                    ukvm: delegate::find_ukvm()?,
                };
                create::create(&args, bundle)
            }
            StandardCmd::Start(s) => {
                ours_or_runc(root, &s.container_id)?;
                commands::start(root, &s.container_id, log)
            }
            StandardCmd::State(s) => {
                ours_or_runc(root, &s.container_id)?;
                commands::state(root, &s.container_id)
            }
            StandardCmd::Kill(k) => {
                ours_or_runc(root, &k.container_id)?;
                commands::kill(root, &k.container_id, &k.signal)
            }
            StandardCmd::Delete(d) => {
                ours_or_runc(root, &d.container_id)?;
                commands::delete(root, &d.container_id, d.force, log)
            }
        },
        Cmd::Common(cmd) => common(*cmd, root),
        Cmd::Init { .. } => Err(Error::Usage("__init is internal".into())),
    }
}

fn common(cmd: CommonCmd, root: &Path) -> Result<()> {
    let unsupported = |id: &str, what| ours_or_runc(root, id).and(Err(Error::Unsupported(what)));
    match cmd {
        CommonCmd::Features(_) => commands::features(),
        CommonCmd::Ps(p) => {
            ours_or_runc(root, &p.container_id)?;
            commands::ps(root, &p.container_id, &p.format)
        }
        CommonCmd::Exec(e) => unsupported(&e.container_id, "exec"),
        CommonCmd::Pause(p) => unsupported(&p.container_id, "pause"),
        CommonCmd::Resume(r) => unsupported(&r.container_id, "resume"),
        CommonCmd::Update(u) => unsupported(&u.container_id, "update"),
        CommonCmd::Events(e) => unsupported(&e.container_id, "events"),
        CommonCmd::Checkpointt(c) => unsupported(&c.container_id, "checkpoint"),
        // Listing, `run` and `spec` concern runc's containers: its own.
        CommonCmd::List(_) | CommonCmd::Run(_) | CommonCmd::Spec(_) => Err(delegate::exec_runc()),
    }
}
