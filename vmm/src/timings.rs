//! Boot-phase timestamps and exit counters, reported by `--timings` as one
//! JSON object. Times are microseconds since the process was created, as the
//! kernel accounts it (see [`process_start`]).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Boot phases, in the order they happen. The names are the JSON keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Command line parsed (CLI only).
    ArgsParsed = 0,
    /// `KVM_CREATE_VM` returned.
    VmCreated,
    /// Guest memory registered with KVM.
    MemoryRegistered,
    /// Kernel image loaded into guest memory.
    KernelLoaded,
    /// vCPU registers, CPUID and descriptor tables set.
    VcpuConfigured,
    /// Devices on the buses, handed to the I/O thread.
    DevicesAttached,
    /// The I/O thread's Landlock and seccomp filter in place (it confines
    /// itself in parallel, from `vm_created` on, so this may come before
    /// the phases above).
    IoThreadSandboxed,
    /// The vCPU thread's seccomp filter in place.
    VcpuSandboxed,
    /// First `KVM_RUN` entered.
    FirstRun,
    /// First byte written by the guest to the serial console.
    FirstSerialByte,
    /// The guest wrote ukvm's ready port.
    GuestReady,
    /// The guest ended the run.
    GuestExit,
    /// The VM's KVM objects were closed.
    VmTornDown,
}

/// Every phase, in order.
pub const PHASES: [Phase; 13] = [
    Phase::ArgsParsed,
    Phase::VmCreated,
    Phase::MemoryRegistered,
    Phase::KernelLoaded,
    Phase::VcpuConfigured,
    Phase::DevicesAttached,
    Phase::IoThreadSandboxed,
    Phase::VcpuSandboxed,
    Phase::FirstRun,
    Phase::FirstSerialByte,
    Phase::GuestReady,
    Phase::GuestExit,
    Phase::VmTornDown,
];

impl Phase {
    /// The JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Phase::ArgsParsed => "args_parsed",
            Phase::VmCreated => "vm_created",
            Phase::MemoryRegistered => "memory_registered",
            Phase::KernelLoaded => "kernel_loaded",
            Phase::VcpuConfigured => "vcpu_configured",
            Phase::DevicesAttached => "devices_attached",
            Phase::IoThreadSandboxed => "io_thread_sandboxed",
            Phase::VcpuSandboxed => "vcpu_sandboxed",
            Phase::FirstRun => "first_run",
            Phase::FirstSerialByte => "first_serial_byte",
            Phase::GuestReady => "guest_ready",
            Phase::GuestExit => "guest_exit",
            Phase::VmTornDown => "vm_torn_down",
        }
    }
}

/// Exit reasons counted separately.
pub const EXIT_REASONS: [&str; 9] = [
    "io_in",
    "io_out",
    "mmio_read",
    "mmio_write",
    "hlt",
    "shutdown",
    "internal_error",
    "other",
    "irq_window",
];

/// Interrupt delivery figures: what the guest got, and the nonsense it
/// programmed that ukvm contained (see `ukvm_devices::pic` and `pit`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterruptStats {
    /// "userspace" (ukvm's 8259A/8254), "kvm" (KVM's irqchip) or "none".
    pub controller: &'static str,
    /// Interrupts injected (userspace controller).
    pub delivered: u64,
    /// Requests merged into one still pending (edges while pending, late
    /// timer ticks).
    pub coalesced: u64,
    /// Level lines held off after being acknowledged 10,000 times without
    /// going low.
    pub level_storms: u64,
    /// Acknowledges with no request left (IRQ 7/15).
    pub spurious: u64,
    /// PIT counts of zero (taken as 65536).
    pub pit_zero_counts: u64,
    /// PIT control words with reserved modes 6/7 (taken as 2/3).
    pub pit_reserved_modes: u64,
    /// Periodic PIT periods under 100 us, stretched to it.
    pub pit_clamped_periods: u64,
    /// Times the vCPU slept in `hlt` waiting for an interrupt.
    pub sleeps: u64,
    /// `KVM_INTERRUPT` calls that failed.
    pub inject_failures: u64,
    /// Interrupts whose latency was measured: from the PIC's output going
    /// up (a device thread's raise, a timer tick) to the injection, which
    /// the guest's handler follows at its next instruction.
    pub latency_count: u64,
    /// Their sum, in microseconds.
    pub latency_sum_us: u64,
    /// The longest, in microseconds.
    pub latency_max_us: u64,
}

impl InterruptStats {
    fn to_json(self) -> String {
        let mut s = format!("{{\"controller\":\"{}\"", self.controller);
        for (key, n) in [
            ("delivered", self.delivered),
            ("coalesced", self.coalesced),
            ("level_storms", self.level_storms),
            ("spurious", self.spurious),
            ("pit_zero_counts", self.pit_zero_counts),
            ("pit_reserved_modes", self.pit_reserved_modes),
            ("pit_clamped_periods", self.pit_clamped_periods),
            ("sleeps", self.sleeps),
            ("inject_failures", self.inject_failures),
            ("latency_count", self.latency_count),
            (
                "latency_mean_us",
                self.latency_sum_us / self.latency_count.max(1),
            ),
            ("latency_max_us", self.latency_max_us),
        ] {
            let _ = write!(s, ",\"{key}\":{n}");
        }
        s.push('}');
        s
    }
}

/// Port ranges counted separately: (name, first port, last port).
pub const PORT_RANGES: [(&str, u16, u16); 7] = [
    ("serial", 0x3f8, 0x3ff),
    ("pci_config", 0xcf8, 0xcff),
    ("debug_exit", 0x501, 0x502),
    ("ukvm", 0x510, 0x511),
    ("i8042", 0x60, 0x64),
    ("rtc", 0x70, 0x71),
    ("other", 0, 0xffff),
];

/// Everything `--timings` reports.
#[derive(Debug, Clone)]
pub struct Timings {
    start: Instant,
    phases: [Option<Duration>; PHASES.len()],
    /// VM exits by reason, indexed like [`EXIT_REASONS`].
    pub exits: [u64; EXIT_REASONS.len()],
    /// Port I/O exits by port range, indexed like [`PORT_RANGES`].
    pub port_exits: [u64; PORT_RANGES.len()],
    /// Bytes of kernel (and module) files read.
    pub kernel_bytes_read: u64,
    /// Kernel format recognised.
    pub format: &'static str,
    /// Reads of ports or addresses no device claimed.
    pub unclaimed_reads: u64,
    /// Writes to ports or addresses no device claimed.
    pub unclaimed_writes: u64,
    /// Whether the VM has KVM's in-kernel interrupt controllers.
    pub irqchip: bool,
    /// Device requests and chains refused (malformed, outside guest
    /// memory, writes to a read-only disk).
    pub refused: u64,
    /// Device requests failed by the host backend (TAP read or write
    /// errors).
    pub backend_errors: u64,
    /// seccomp mode of the run ("on", "log", "off").
    pub seccomp: &'static str,
    /// What Landlock enforced ("full", "partial", "unsupported", "off").
    pub landlock: &'static str,
    /// How the guest ended ("exit", "reset", "halt", "crash").
    pub outcome: &'static str,
    /// Instructions ukvm completed for KVM's emulator, by mnemonic.
    pub emulated: Vec<(String, u64)>,
    /// Interrupt delivery.
    pub interrupts: InterruptStats,
}

impl Timings {
    /// Starts measuring from `start` (usually [`process_start`]).
    pub fn new(start: Instant) -> Self {
        Timings {
            start,
            phases: [None; PHASES.len()],
            exits: [0; EXIT_REASONS.len()],
            port_exits: [0; PORT_RANGES.len()],
            kernel_bytes_read: 0,
            format: "",
            unclaimed_reads: 0,
            unclaimed_writes: 0,
            irqchip: false,
            refused: 0,
            backend_errors: 0,
            seccomp: "off",
            landlock: "off",
            outcome: "",
            emulated: Vec::new(),
            interrupts: InterruptStats {
                controller: "none",
                ..Default::default()
            },
        }
    }

    /// Records `phase` as happening now (first time only).
    pub fn mark(&mut self, phase: Phase) {
        self.mark_at(phase, Instant::now());
    }

    /// Records `phase` at `at` (first time only).
    pub fn mark_at(&mut self, phase: Phase, at: Instant) {
        let slot = &mut self.phases[phase as usize];
        if slot.is_none() {
            *slot = Some(at.saturating_duration_since(self.start));
        }
    }

    /// When `phase` happened, relative to the start.
    pub fn get(&self, phase: Phase) -> Option<Duration> {
        self.phases[phase as usize]
    }

    /// Counts one port I/O exit.
    pub fn count_port(&mut self, port: u16) {
        let i = PORT_RANGES
            .iter()
            .position(|(_, lo, hi)| (*lo..=*hi).contains(&port))
            .unwrap_or(PORT_RANGES.len() - 1);
        self.port_exits[i] += 1;
    }

    /// The report as one JSON object (schema in the README).
    pub fn to_json(&self) -> String {
        let mut s = String::from("{\"schema\":\"ukvm-timings/1\",\"unit\":\"us\",\"phases\":{");
        for (i, phase) in PHASES.iter().enumerate() {
            let value = self
                .get(*phase)
                .map_or("null".into(), |d| d.as_micros().to_string());
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(s, "{sep}\"{}\":{value}", phase.key());
        }
        s.push_str("},\"exits\":{");
        push_counts(&mut s, EXIT_REASONS.iter().copied().zip(self.exits));
        s.push_str("},\"port_exits\":{");
        push_counts(&mut s, PORT_RANGES.iter().map(|r| r.0).zip(self.port_exits));
        let _ = write!(
            s,
            "}},\"kernel_bytes_read\":{},\"format\":\"{}\",\"unclaimed_reads\":{},\"unclaimed_writes\":{},\"irqchip\":{},\"refused\":{},\"backend_errors\":{},\"seccomp\":\"{}\",\"landlock\":\"{}\",\"outcome\":\"{}\"}}",
            self.kernel_bytes_read, self.format, self.unclaimed_reads, self.unclaimed_writes, self.irqchip, self.refused, self.backend_errors, self.seccomp, self.landlock, self.outcome
        );
        // Appended inside the object, after the keys that came before it.
        s.pop();
        s.push_str(",\"emulated\":{");
        push_counts(&mut s, self.emulated.iter().map(|(m, n)| (m.as_str(), *n)));
        let _ = write!(s, "}},\"interrupts\":{}}}", self.interrupts.to_json());
        s
    }
}

fn push_counts<'a>(s: &mut String, counts: impl Iterator<Item = (&'a str, u64)>) {
    for (i, (name, n)) in counts.enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(s, "{sep}\"{name}\":{n}");
    }
}

/// The moment the kernel created this process, as an `Instant`.
///
/// The kernel accounts CPU time to a process from its creation
/// (`CLOCK_PROCESS_CPUTIME_ID`); until the process first sleeps, that time
/// equals wall time since creation. ukvm reads both clocks before doing any
/// I/O that can block, so `now - cputime` is the creation time to within
/// scheduling noise, with nanosecond resolution (`/proc/self/stat` has
/// only 10 ms). Time spent runnable but not running, or blocked (a binary
/// not in the page cache), is not CPU time, so the estimate can only be
/// late: phases are lower bounds, exact on an idle machine with warm
/// caches (the README's *Boot timings* shows the check against an outside
/// measurement). Call this first thing in `main`.
pub fn process_start() -> Instant {
    let now = Instant::now();
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return now;
    }
    let cpu = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
    now.checked_sub(cpu).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_every_key() {
        let start = Instant::now();
        let mut t = Timings::new(start);
        t.mark_at(Phase::VmCreated, start + Duration::from_micros(75));
        t.mark_at(Phase::VmCreated, start + Duration::from_micros(99));
        t.count_port(0x3f8);
        t.count_port(0x1234);
        t.exits[0] = 3;
        let json = t.to_json();
        assert!(json.contains("\"vm_created\":75"), "{json}");
        assert!(json.contains("\"guest_ready\":null"));
        assert!(json.contains("\"serial\":1"));
        assert!(json.contains("\"other\":1"));
        assert!(json.contains("\"io_in\":3"));
        assert!(
            json.contains("\"refused\":0,\"backend_errors\":0,"),
            "{json}"
        );
        for p in PHASES {
            assert!(json.contains(p.key()));
        }
        assert!(
            json.contains(r#""interrupts":{"controller":"none","delivered":0,"#),
            "{json}"
        );
        assert!(json.contains(r#""latency_max_us":0}}"#), "{json}");
        assert!(json.starts_with('{') && json.ends_with('}'));
    }

    #[test]
    fn process_start_is_in_the_past() {
        let s = process_start();
        assert!(s <= Instant::now());
    }
}
