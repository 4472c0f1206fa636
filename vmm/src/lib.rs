//! ukvm: a KVM monitor for unikernels.
//!
//! ukvm loads a kernel straight into guest memory (no firmware), gives it a
//! serial console and the handful of legacy ports unikernels touch, and runs
//! it on one vCPU until it exits. The same engine backs the `ukvm` command.
//!
//! # Example
//!
//! ```no_run
//! use ukvm::{Exit, VmConfig};
//!
//! # fn main() -> Result<(), ukvm::Error> {
//! let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
//! # struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
//! # impl std::io::Write for Buf {
//! #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
//! #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
//! # }
//! let mut vm = VmConfig::new()
//!     .kernel_path("hello.bin")
//!     .cmdline("exit=7 hello")
//!     .mem_mib(32)
//!     .serial(Box::new(Buf(output.clone())))
//!     .build()?; // validates, creates the VM, loads the kernel
//! let exit = vm.run()?; // Err(Error::GuestCrash(..)) carries RIP and bytes
//! assert_eq!(exit, Exit::Code(7));
//! let timings = vm.shutdown();
//! println!("{}", timings.to_json());
//! # Ok(())
//! # }
//! ```
//!
//! Modules: [`config`] (what to run), [`vm`] (KVM objects and the vCPU
//! loop), [`timings`] (boot phases), [`error`] (errors and exit statuses).

#![deny(missing_docs)]

pub mod config;
pub mod confine;
mod console;
mod cpuid_cache;
mod dumpcore;
mod emulation;
pub mod error;
pub mod fastexit;
#[doc(hidden)]
pub mod fuzz_hooks;
mod gdb;
mod hvt;
mod inputs;
mod interrupts;
mod io_thread;
mod kick;
mod linux;
mod machine;
mod memory;
mod net;
mod pci;
pub mod stop;
pub mod stop_signals;
pub mod terminal;
pub mod timings;
mod vcpu;
pub mod vm;
mod vm_fds;

pub use config::{Kernel, VmConfig};
pub use error::{Crash, CrashKind, Error, Result};
pub use interrupts::IrqChipKind;
pub use stop::StopHandle;
pub use timings::Timings;
/// Kernel formats and boot structures (the `ukvm-boot` crate).
pub use ukvm_boot as boot;
pub use ukvm_boot::Format as BootFormat;
pub use ukvm_debug::GdbAddr;
/// The sandbox settings [`VmConfig::seccomp`] and [`VmConfig::jail`] take.
pub use ukvm_sandbox::{Jail, SeccompMode, User};
pub use vm::{Exit, Vm};
