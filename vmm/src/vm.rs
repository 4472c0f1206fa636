//! The VM: KVM objects, guest memory, the buses, and the vCPU loop that
//! dispatches exits to them.

use crate::config::VmConfig;
use crate::console::ConsoleInput;
use crate::error::{Crash, CrashKind, Error, Result};
use crate::inputs::Inputs;
use crate::interrupts::Delivery;
use crate::io_thread::IoThread;
use crate::kick::{Armed, Kicker};
use crate::machine::{self, Devices, Wiring};
use crate::stop::StopHandle;
use crate::timings::{Phase, Timings};
use crate::{emulation, memory, vcpu};
use kvm_bindings::KVM_INTERNAL_ERROR_EMULATION;
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use ukvm_boot::{Boot, BootParams, Module};
use ukvm_devices::serial::Serial;
use ukvm_devices::{Bus, Event};
use vm_memory::GuestMemoryMmap;

/// How a run ended, when the guest ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The guest asked for this exit status (port 0x501 or 0x511).
    Code(i32),
    /// The guest reset the machine (i8042 0xFE).
    Reset,
    /// The guest powered the machine off (ACPI S5 through PM1a_CNT, what
    /// Linux's `poweroff` does).
    PowerOff,
    /// The guest halted with nothing left that could wake it.
    Halted,
    /// Another thread ended the run with [`StopHandle::stop`].
    Stopped,
}

impl Exit {
    /// The process exit status the CLI uses: the guest's code, or 0 for a
    /// reset, a power-off, a halt or a stop (a CLI that stops the VM on a
    /// signal reports the signal its own way).
    pub fn status(self) -> i32 {
        match self {
            Exit::Code(code) => code,
            Exit::Reset | Exit::PowerOff | Exit::Halted | Exit::Stopped => 0,
        }
    }

    fn outcome(self) -> &'static str {
        match self {
            Exit::Code(_) => "exit",
            Exit::Reset => "reset",
            Exit::PowerOff => "poweroff",
            Exit::Halted => "halt",
            Exit::Stopped => "stopped",
        }
    }
}

/// What one exit asks the loop to do.
pub(crate) enum Step {
    Continue,
    Stop(Exit),
    Crash(CrashKind),
    Fail(kvm_ioctls::Error),
    /// For the debugger only (`crate::gdb`): a debug exit, or an int3 KVM
    /// could not emulate, not yet completed.
    Debug(crate::gdb::DebugExit),
}

/// A VM with its kernel loaded, ready to run.
///
/// Field order matters: the vCPU and VM fds drop before guest memory.
pub struct Vm {
    vcpu: VcpuFd,
    /// Shared with the PCI devices' interrupt lines (`KVM_IRQ_LINE`).
    vm: Arc<VmFd>,
    mem: GuestMemoryMmap,
    pio: Bus,
    mmio: Bus,
    /// Serves device queues; present only when the VM has PCI devices.
    io: Option<IoThread>,
    serial: Arc<Mutex<Serial>>,
    boot: Boot,
    timings: Timings,
    /// Completes instructions KVM's emulator gives up on.
    emulator: ukvm_emulator::Emulator,
    /// Injects interrupts and decides what `hlt` means.
    delivery: Box<dyn Delivery>,
    /// Brings the vCPU thread out of `KVM_RUN` for other threads.
    kicker: Kicker,
    /// The vCPU thread's filter, installed by the first [`Vm::run`].
    seccomp: ukvm_sandbox::SeccompMode,
    /// The fds the VM's threads use, which their filters pin calls to.
    fds: ukvm_sandbox::Fds,
    stop: StopHandle,
    /// Stop signals unblocked on the vCPU thread while it runs.
    stop_signals: Option<crate::stop_signals::StopSignals>,
    /// Forwards console input to COM1 while the VM exists.
    console: Option<ConsoleInput>,
    /// Threads whose filters the guest's first instruction waits for.
    confinements: Vec<crate::confine::Confinement>,
    /// `--gdb`: the socket gdb connects to before the first instruction.
    gdb: Option<crate::gdb::Pending>,
    /// A debugger is attached: int3s go to it before being completed.
    pub(crate) debugging: bool,
    /// `--dumpcore`: where a crashed guest's core goes, and its class.
    dumpcore: Option<(ukvm_debug::core_file::CoreDir, ukvm_debug::Layout)>,
}

fn kvm_err(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { op, source }
}

impl Vm {
    pub(crate) fn new(cfg: VmConfig) -> Result<Vm> {
        let mut timings = Timings::new(cfg.start.unwrap_or_else(Instant::now));
        if let Some(at) = cfg.args_parsed {
            timings.mark_at(Phase::ArgsParsed, at);
        }
        let Inputs {
            name,
            image,
            modules,
            initrd,
        } = Inputs::read(&cfg)?;
        timings.kernel_bytes_read = (image.len()
            + modules.iter().map(Vec::len).sum::<usize>()
            + initrd.as_ref().map_or(0, Vec::len)) as u64;
        // Reject empty images and images with no usable header before
        // touching KVM.
        let format = ukvm_boot::probe(&image).map_err(|source| Error::Kernel {
            name: name.clone(),
            source,
        })?;
        // A bad --gdb address fails before any KVM object exists.
        let layout = crate::gdb::layout_for(format, &image);
        let gdb = crate::gdb::Pending::bind(&cfg, layout)?;
        let mut machine = machine::for_format(format, &name, &image, &cfg)?;
        // Opened now: once the sandbox is in, a core can only be created
        // relative to this directory (see `ukvm_debug::core_file`).
        let core_dir = cfg
            .dumpcore
            .as_deref()
            .map(ukvm_debug::core_file::CoreDir::open)
            .transpose()
            .map_err(|e| Error::Config(format!("--dumpcore: {e}")))?;
        let kicker = Kicker::new().map_err(|e| Error::Device(format!("vCPU kick: {e}")))?;

        let kvm = Kvm::new().map_err(Error::KvmOpen)?;
        let vm = Arc::new(kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?);
        timings.mark(Phase::VmCreated);
        // An in-kernel irqchip must exist before the vCPU.
        timings.irqchip = machine.create_chips(&vm)?;
        let mem = memory::create(&machine.ram_ranges(cfg.mem_bytes()))?;
        memory::register(&vm, &mem)?;
        timings.mark(Phase::MemoryRegistered);
        // Not before memory registration: that waits for an SRCU grace
        // period, which a busy second thread delayed by milliseconds.
        let mut io = IoThread::start_for(&*machine, &cfg, &vm, &kicker)?;

        let params = BootParams {
            cmdline: cfg.cmdline.clone(),
            kernel_name: cfg.kernel_name.clone().unwrap_or_else(|| name.clone()),
            modules: cfg
                .modules
                .iter()
                .zip(&modules)
                .map(|(m, data)| Module {
                    name: m.path.display().to_string(),
                    data,
                    string: m.string.clone(),
                })
                .collect(),
            initrd: initrd.as_deref(),
            acpi_rsdp: machine.write_tables(&mem)?,
        };
        let boot = machine
            .load(&mem, &image, &params)
            .map_err(|source| Error::Kernel { name, source })?;
        timings.format = boot.format.name();
        timings.mark(Phase::KernelLoaded);

        let vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
        vcpu::configure(&kvm, &vcpu, &boot)?;
        machine.configure_vcpu(&vcpu, &mem)?;
        timings.mark(Phase::VcpuConfigured);

        let output = crate::vm_fds::output(&cfg);
        let serial = Arc::new(Mutex::new(Serial::new(
            cfg.serial,
            machine.serial_irq(&vm, &kicker)?,
        )));
        // Every file is open: enter the jail before the other threads
        // start, so that they inherit the user and Landlock.
        let mut jail = cfg.jail.clone();
        jail.create_beneath = core_dir.as_ref().map(|d| d.dir_fd());
        timings.landlock = jail.enter()?.name();
        if let Some(io) = io.as_mut() {
            io.confine_after_jail()?;
        }
        let Devices {
            pio,
            mmio,
            io,
            delivery,
            fds: device_fds,
        } = machine.attach(Wiring {
            vm: &vm,
            mem: &mem,
            serial: serial.clone(),
            kicker: &kicker,
            io,
        })?;
        timings.mark(Phase::DevicesAttached);
        timings.seccomp = cfg.seccomp.name();
        let mut fds = crate::vm_fds::gather(
            (&vcpu, &vm, &kicker),
            output,
            &device_fds,
            core_dir.as_ref(),
        );
        let stop = StopHandle::new(kicker.clone());
        if cfg.serial_input.is_some() {
            ukvm_devices::bus::lock(&serial).set_interactive();
        }
        let console = cfg
            .serial_input
            .map(|fd| ConsoleInput::start(fd, serial.clone(), stop.clone(), cfg.seccomp, &fds))
            .transpose()?;
        let mut confinements = Vec::new();
        let console = console.map(|(console, confined)| {
            // The vCPU thread ends the console thread through it.
            fds.events.push(console.quit_fd());
            confinements.push(confined);
            console
        });
        Ok(Vm {
            vcpu,
            vm,
            mem,
            pio,
            mmio,
            io,
            serial,
            boot,
            timings,
            emulator: ukvm_emulator::Emulator::new(),
            delivery,
            stop,
            stop_signals: None,
            kicker,
            seccomp: cfg.seccomp,
            fds,
            console,
            confinements,
            gdb,
            debugging: false,
            dumpcore: core_dir.map(|dir| (dir, layout)),
        })
    }

    /// A handle that ends [`Vm::run`] from another thread with
    /// [`Exit::Stopped`] (see [`StopHandle`]).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Has [`Vm::run`] stop the guest, as [`StopHandle::stop`] does, on
    /// the first of `signals` (see [`crate::stop_signals`]): they are
    /// unblocked on the thread that runs the guest while it does.
    pub fn stop_on_signals(&mut self, signals: crate::stop_signals::StopSignals) {
        self.stop.take_signals();
        self.stop_signals = Some(signals);
    }

    /// Has [`Vm::run`] wait, before the guest's first instruction, until
    /// the thread behind `confinement` has its seccomp filter.
    pub fn confine_before_run(&mut self, confinement: crate::confine::Confinement) {
        self.confinements.push(confinement);
    }

    /// Runs the guest until it exits, resets, halts or crashes. Serial output
    /// is flushed before this returns.
    pub fn run(&mut self) -> Result<Exit> {
        // gdb comes before the filter: accepting it and starting its
        // Ctrl-C thread are not in the vCPU thread's allowlist.
        let mut gdb = self.gdb.take().map(|g| g.accept(self)).transpose()?;
        let mode = std::mem::replace(&mut self.seccomp, ukvm_sandbox::SeccompMode::Off);
        let mut fds = self.fds.clone();
        if let Some(gdb) = &gdb {
            fds.gdb.push(gdb.fd());
        }
        ukvm_sandbox::seccomp::install(ukvm_sandbox::ThreadKind::Vcpu, mode, &fds)?;
        self.timings.mark(Phase::VcpuSandboxed);
        if let Some(io) = self.io.as_mut() {
            let at = io.wait_confined()?;
            self.timings.mark_at(Phase::IoThreadSandboxed, at);
        }
        let helpers = gdb.as_mut().and_then(|g| g.confinement.take());
        for c in self.confinements.drain(..).chain(helpers) {
            c.wait()?;
        }
        let result = self.run_loop(gdb);
        if let Some((dir, layout)) = self.dumpcore.take() {
            crate::dumpcore::after_run(self, &result, dir, layout);
        }
        // Input has nowhere to go now.
        self.console = None;
        // The guest is done: let the I/O thread finish its request and go.
        if let Some(io) = self.io.as_mut() {
            io.stop();
            self.timings.refused = io.refused();
            self.timings.backend_errors = io.backend_errors();
        }
        self.timings.emulated = self.emulator.counts();
        self.delivery.finish();
        self.delivery.report(&mut self.timings);
        let mut serial = ukvm_devices::bus::lock(&self.serial);
        if let Some(at) = serial.first_byte() {
            self.timings.mark_at(Phase::FirstSerialByte, at);
        }
        // A console that cannot be written does not change how the guest
        // ended; the guest's own result is what the caller wants.
        let _ = serial.flush();
        drop(serial);
        let unclaimed = self.pio.unclaimed();
        let mmio_unclaimed = self.mmio.unclaimed();
        self.timings.unclaimed_reads = unclaimed.reads + mmio_unclaimed.reads;
        self.timings.unclaimed_writes = unclaimed.writes + mmio_unclaimed.writes;
        self.timings.outcome = match &result {
            Ok(exit) => exit.outcome(),
            Err(_) => "crash",
        };
        result
    }

    fn run_loop(&mut self, gdb: Option<crate::gdb::Connected>) -> Result<Exit> {
        // SAFETY: `self.vcpu` outlives the guard, a local of this function.
        let armed = unsafe { self.kicker.arm(&mut self.vcpu) };
        // After arming: the handler sets this thread's immediate_exit.
        let _signals = self.stop_signals.map(crate::stop_signals::Unblocked::new);
        self.delivery.start();
        if let Some(gdb) = gdb {
            let step = crate::gdb::run(self, &armed, gdb)?;
            return self.finish(step).unwrap_or(Ok(Exit::Stopped));
        }
        self.timings.mark(Phase::FirstRun);
        loop {
            let step = if self.stop.is_requested() {
                Step::Stop(Exit::Stopped)
            } else {
                self.step(&armed)
            };
            if let Some(result) = self.finish(step) {
                return result;
            }
        }
    }

    /// The run's result for a step that ends it; `None` to go on.
    pub(crate) fn finish(&mut self, step: Step) -> Option<Result<Exit>> {
        Some(match step {
            Step::Continue | Step::Debug(_) => return None,
            Step::Stop(exit) => {
                self.timings.mark(Phase::GuestExit);
                Ok(exit)
            }
            Step::Crash(kind) => {
                self.timings.mark(Phase::GuestExit);
                Err(Error::GuestCrash(self.crash(kind)))
            }
            Step::Fail(source) => Err(Error::Kvm {
                op: "KVM_RUN",
                source,
            }),
        })
    }

    /// Runs the vCPU to its next exit and handles it.
    pub(crate) fn step(&mut self, armed: &Armed) -> Step {
        self.delivery.before_run(&mut self.vcpu);
        let t = &mut self.timings;
        let exit = match self.vcpu.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                // A kick (or immediate_exit): the loop looks at why next.
                armed.clear();
                if self.delivery.interrupted(&mut self.vcpu) {
                    t.exits[4] += 1;
                    return Step::Stop(Exit::Halted);
                }
                return Step::Continue;
            }
            Err(e) => return Step::Fail(e),
        };
        match exit {
            VcpuExit::IoIn(port, data) => {
                t.exits[0] += 1;
                t.count_port(port);
                self.pio.read(u64::from(port), data);
                Step::Continue
            }
            VcpuExit::IoOut(port, data) => {
                t.exits[1] += 1;
                t.count_port(port);
                event_step(t, self.pio.write(u64::from(port), data))
            }
            VcpuExit::MmioRead(addr, data) => {
                t.exits[2] += 1;
                self.mmio.read(addr, data);
                Step::Continue
            }
            VcpuExit::MmioWrite(addr, data) => {
                t.exits[3] += 1;
                event_step(t, self.mmio.write(addr, data))
            }
            VcpuExit::Hlt => {
                t.exits[4] += 1;
                // Sleeps until an interrupt can wake the guest; if none
                // ever can, the guest is done.
                if self.delivery.halted(&mut self.vcpu, &self.stop) {
                    Step::Continue
                } else {
                    Step::Stop(Exit::Halted)
                }
            }
            VcpuExit::IrqWindowOpen => {
                t.exits[8] += 1;
                Step::Continue
            }
            VcpuExit::Shutdown => {
                t.exits[5] += 1;
                Step::Crash(CrashKind::TripleFault)
            }
            VcpuExit::InternalError => {
                t.exits[6] += 1;
                if self.debugging && crate::gdb::at_int3(&mut self.vcpu) {
                    return Step::Debug(crate::gdb::DebugExit::Int3);
                }
                self.complete()
            }
            VcpuExit::FailEntry(reason, _) => {
                t.exits[7] += 1;
                Step::Crash(CrashKind::FailEntry(reason))
            }
            VcpuExit::Debug(arch) => Step::Debug(crate::gdb::DebugExit::Trap(arch)),
            VcpuExit::SystemEvent(kind, _) => {
                t.exits[7] += 1;
                match kind {
                    kvm_bindings::KVM_SYSTEM_EVENT_RESET => Step::Stop(Exit::Reset),
                    kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => Step::Stop(Exit::Halted),
                    other => {
                        Step::Crash(CrashKind::UnexpectedExit(format!("system event {other}")))
                    }
                }
            }
            other => {
                t.exits[7] += 1;
                Step::Crash(CrashKind::UnexpectedExit(format!("{other:?}")))
            }
        }
    }

    /// Completes the instruction KVM could not emulate at the last exit.
    pub(crate) fn complete(&mut self) -> Step {
        match emulation::handle(&mut self.emulator, &mut self.vcpu, &self.vm, &self.mem) {
            emulation::Outcome::Resume => Step::Continue,
            emulation::Outcome::Stop(kind) => Step::Crash(kind),
        }
    }

    /// Collects RIP and, for internal errors, KVM's suberror and the
    /// instruction bytes it reported.
    fn crash(&mut self, kind: CrashKind) -> Crash {
        let rip = self.vcpu.get_regs().map_or(0, |r| r.rip);
        let mut crash = Crash {
            kind,
            rip,
            insn: Vec::new(),
        };
        if matches!(crash.kind, CrashKind::InternalError(_)) {
            let run = self.vcpu.get_kvm_run();
            // SAFETY: after KVM_EXIT_INTERNAL_ERROR the kernel filled the
            // `internal` member of the exit union; `emulation_failure` shares
            // its leading suberror/ndata/flags layout and is only read when
            // the suberror says it is that variant.
            let (suberror, flags, size, bytes) = unsafe {
                let ef = run.__bindgen_anon_1.emulation_failure;
                let insn = ef.__bindgen_anon_1.__bindgen_anon_1;
                (ef.suberror, ef.flags, insn.insn_size, insn.insn_bytes)
            };
            crash.kind = if suberror == KVM_INTERNAL_ERROR_EMULATION {
                CrashKind::EmulationFailure
            } else {
                CrashKind::InternalError(suberror)
            };
            if suberror == KVM_INTERNAL_ERROR_EMULATION
                && flags
                    & u64::from(kvm_bindings::KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)
                    != 0
            {
                crash.insn = bytes[..usize::from(size).min(bytes.len())].to_vec();
            }
        }
        crash
    }

    pub(crate) fn vcpu_mut(&mut self) -> &mut VcpuFd {
        &mut self.vcpu
    }

    pub(crate) fn kicker(&self) -> Kicker {
        self.kicker.clone()
    }

    /// The filter mode the VM's threads get, and the fds it pins.
    pub(crate) fn sandbox(&self) -> (ukvm_sandbox::SeccompMode, ukvm_sandbox::Fds) {
        (self.seccomp, self.fds.clone())
    }

    /// The disk images the VM holds: what another process may want as
    /// soon as this one is gone, and cheap to close now
    /// (`fastexit::exit_detached`). Not the TAPs: closing a TAP's last fd
    /// waits for an RCU grace period (7-12 ms here), which the teardown
    /// helper pays instead; the next VM on that TAP retries while it is
    /// busy (`ukvm_virtio_net::tap`).
    pub fn backend_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.fds.disks.clone()
    }

    pub(crate) fn mark_first_run(&mut self) {
        self.timings.mark(Phase::FirstRun);
    }

    /// Phase timestamps and counters so far.
    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// Guest memory, for inspecting what the loader wrote.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Copies guest memory at guest physical `addr` into `buf`.
    pub fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        use vm_memory::Bytes;
        self.mem
            .read_slice(buf, vm_memory::GuestAddress(addr))
            .map_err(|e| Error::Config(format!("guest memory at {addr:#x}: {e}")))
    }

    /// What the loader made of the kernel.
    pub fn boot(&self) -> &Boot {
        &self.boot
    }

    /// Closes the VM (vCPU, VM fd, guest memory) and returns the timings
    /// with the teardown time recorded.
    pub fn shutdown(self) -> Timings {
        let Vm {
            vcpu,
            vm,
            mem,
            pio,
            mmio,
            io,
            mut timings,
            ..
        } = self;
        // Devices hold the VM fd for their interrupt lines: drop them first
        // so the VM really closes here.
        drop((io, pio, mmio));
        drop(vcpu);
        drop(vm);
        drop(mem);
        timings.mark(Phase::VmTornDown);
        timings
    }
}

fn event_step(t: &mut Timings, event: Option<Event>) -> Step {
    match event {
        None => Step::Continue,
        Some(Event::Ready) => {
            t.mark(Phase::GuestReady);
            Step::Continue
        }
        Some(Event::Exit(code)) => Step::Stop(Exit::Code(code)),
        Some(Event::Reset) => Step::Stop(Exit::Reset),
        Some(Event::PowerOff) => Step::Stop(Exit::PowerOff),
        Some(Event::GuestFault(fault)) => Step::Crash(CrashKind::GuestFault(fault.to_string())),
    }
}
