//! Ending the process without waiting for KVM to tear the VM down.
//!
//! When a VM's last reference goes, the kernel destroys it in that thread,
//! and a process's exit drops its references (fds, and the vCPU's `kvm_run`
//! mapping in its address space) before its parent can reap it. Measured on
//! the machines here: ~0.5 ms for a plain VM, and 5-35 ms for one with
//! devices on KVM's I/O buses (the in-kernel irqchip, coalesced I/O), most
//! of it waiting for SRCU grace periods, not computing.
//!
//! [`exit_detached`] starts a helper that shares our address space
//! (`CLONE_VM`), closes every fd it inherited and exits. The shared
//! address space, with the vCPU's `kvm_run` mapping in it, keeps the VM
//! alive until the helper is gone, so our own exit drops references only,
//! and the teardown happens in the helper's exit, after our parent has
//! reaped us. The helper closes the fds it inherited at once, but that
//! can be after our parent has reaped us: the disk images, which the next
//! VM may want at once, are closed before the helper exists, so it never
//! holds them. The TAPs are left to the helper on purpose: closing a
//! TAP's last fd waits for an RCU grace period (`tun_detach`, 7-12 ms
//! here, in about half the runs), which would be our exit's cost again;
//! the next VM on that TAP retries while the TAP is busy
//! (`ukvm_virtio_net::tap`). Soon nothing stays open on our behalf but the
//! read end of a pipe whose only writer is us.
//!
//! The helper must outlive our exit: if it is gone first, our own exit
//! drops the last reference to the address space and we pay the teardown
//! after all (measured: a guest with one disk, whose ioeventfds make the
//! teardown wait ~12 ms for SRCU, exited after 16 ms in most runs and
//! 3.2 ms in the few where the helper lost the race). So it blocks on that
//! pipe until the kernel closes our write end, which happens in our exit
//! after our address space has been let go (`exit_mm` precedes
//! `exit_files`).

use std::io::Write;
use std::os::fd::RawFd;

/// Stack of the helper: it only makes two system calls.
const HELPER_STACK: usize = 16 << 10;

/// Flushes stdout and stderr and ends the process with `status`, leaving
/// the teardown of what `keep` holds (the VM) to a helper. `release`
/// (`Vm::backend_fds`: the disk images) are closed first, so that the
/// helper does not inherit them and they are free once we are reaped; no
/// thread may use them any more, and nothing else closes them (`keep` is
/// forgotten).
pub fn exit_detached<T>(keep: T, release: &[RawFd], status: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    for &fd in release {
        // SAFETY: closes an fd that `keep` owns and never uses again: it
        // is forgotten below, then the process ends.
        unsafe { libc::close(fd) };
    }
    // The helper runs on this stack after we are gone: never freed.
    let stack = Box::leak(vec![0u8; HELPER_STACK].into_boxed_slice());
    let mut pipe = [-1i32; 2];
    // SAFETY: pipe2 writes two fds into the array it is given. On failure
    // the helper sees -1 and exits at once (the old race, still correct).
    unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) };
    // The helper's argument: the read end, passed by value in the pointer.
    let arg = pipe[0] as isize as *mut libc::c_void;
    // SAFETY: the helper shares our memory, runs on its own stack (16-byte
    // aligned top, inside the leaked allocation) and only makes raw system
    // calls, touching no state of ours. If clone fails we simply exit
    // normally below, tearing the VM down ourselves.
    unsafe {
        let top = stack.as_mut_ptr().add(HELPER_STACK) as usize & !15;
        libc::clone(
            helper,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::SIGCHLD,
            arg,
        );
    }
    // Dropping the VM would close it here and now; the kernel drops our
    // references at exit instead, cheaply while the helper keeps it alive.
    std::mem::forget(keep);
    // SAFETY: ends the process; everything to keep was flushed above.
    unsafe { libc::_exit(status) }
}

/// The helper: close every inherited fd but the pipe's read end (whoever
/// reads our stdout waits for all its writers), wait for the hang-up on
/// it, i.e. for our exit, then exit, which releases the address space and
/// with it the VM. It waits with `ppoll`, not `read`: it runs under the
/// vCPU thread's seccomp filter, which pins `read` to fds known before the
/// run, and the pipe is made after it.
extern "C" fn helper(arg: *mut libc::c_void) -> libc::c_int {
    let keep = arg as isize as i32;
    // SAFETY: plain system calls on the helper's own fd table and a
    // one-byte buffer on its own stack.
    unsafe {
        let closed = if keep < 0 {
            libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32)
        } else {
            let keep = keep as u32;
            let low = if keep > 0 {
                libc::syscall(libc::SYS_close_range, 0u32, keep - 1, 0u32)
            } else {
                0
            };
            low | libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0u32)
        };
        if closed != 0 {
            // Kernels before 5.9: at least let go of the standard streams.
            for fd in 0..3 {
                libc::close(fd);
            }
        }
        if keep >= 0 {
            let mut pfd = libc::pollfd {
                fd: keep,
                events: libc::POLLIN,
                revents: 0,
            };
            // Returns with POLLHUP once our exit has closed the write end
            // (nothing is ever written); EINTR cannot happen (the helper
            // handles no signals).
            libc::syscall(
                libc::SYS_ppoll,
                &mut pfd as *mut libc::pollfd,
                1usize,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            );
        }
        libc::syscall(libc::SYS_exit, 0);
    }
    0
}
