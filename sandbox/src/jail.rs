//! The jail a VM enters once its files are open: `--chroot`, `--user`,
//! then Landlock.

use crate::{Error, Result};
use landlock::{
    Access, AccessFs, AccessNet, PathBeneath, RestrictionStatus, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, ABI,
};
use std::ffi::CString;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A user and group to run as (`--user UID:GID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    /// User ID.
    pub uid: u32,
    /// Group ID (also the only supplementary group left).
    pub gid: u32,
}

impl FromStr for User {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Parse(format!("--user {s}: expected UID:GID (numbers)"));
        let (u, g) = s.split_once(':').ok_or_else(bad)?;
        Ok(User {
            uid: u.parse().map_err(|_| bad())?,
            gid: g.parse().map_err(|_| bad())?,
        })
    }
}

/// What to restrict after set-up.
#[derive(Debug, Clone, Default)]
pub struct Jail {
    /// `chroot` into this directory (needs root).
    pub chroot: Option<PathBuf>,
    /// Drop to this user and group (needs root).
    pub user: Option<User>,
    /// Take away all filesystem and TCP access with Landlock, where the
    /// kernel has it (silently nothing where it has not).
    pub landlock: bool,
    /// A directory (an open fd, `O_PATH` will do) beneath which Landlock
    /// still lets new files be created and written: `--dumpcore`'s.
    pub create_beneath: Option<RawFd>,
}

/// How much of the jail the kernel enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockStatus {
    /// Not asked for.
    Off,
    /// The kernel has no Landlock.
    Unsupported,
    /// Some of the access rights (an older Landlock ABI).
    Partial,
    /// All of them.
    Full,
}

impl LandlockStatus {
    /// The status as `--timings` reports it.
    pub fn name(self) -> &'static str {
        match self {
            LandlockStatus::Off => "off",
            LandlockStatus::Unsupported => "unsupported",
            LandlockStatus::Partial => "partial",
            LandlockStatus::Full => "full",
        }
    }
}

fn host(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Host { what, source }
}

fn check(rc: libc::c_int, what: &str) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(host(what)(std::io::Error::last_os_error()))
    }
}

impl Jail {
    /// Enters the jail: chroot, then the user, then Landlock. Call when
    /// every file the VM needs is open, from the thread that will start
    /// the others (Landlock, like a uid change, is inherited).
    pub fn enter(&self) -> Result<LandlockStatus> {
        if let Some(dir) = &self.chroot {
            chroot(dir)?;
        }
        if let Some(user) = self.user {
            drop_to(user)?;
        }
        if self.landlock {
            landlock(self.create_beneath)
        } else {
            Ok(LandlockStatus::Off)
        }
    }

    /// Landlock alone, on the calling thread, with nothing allowed (not
    /// `create_beneath` either): for a thread started before
    /// [`Jail::enter`] that opens no file itself. Landlock is per thread
    /// and inherited only by threads started later, whereas the chroot
    /// and the user (libc changes them on every thread) are the process's.
    pub fn landlock_thread() -> Result<LandlockStatus> {
        landlock(None)
    }
}

fn chroot(dir: &Path) -> Result<()> {
    let what = format!("--chroot {}", dir.display());
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::Parse(format!("{what}: path contains a NUL byte")))?;
    // SAFETY: chroot and chdir read a NUL-terminated path and nothing else.
    check(unsafe { libc::chroot(c.as_ptr()) }, &what)?;
    // SAFETY: as above; "/" is a static NUL-terminated string.
    check(unsafe { libc::chdir(c"/".as_ptr()) }, &what)
}

/// Drops every supplementary group, then the group, then the user, and
/// checks that root cannot be regained.
fn drop_to(u: User) -> Result<()> {
    let what = format!("--user {}:{}", u.uid, u.gid);
    // SAFETY: setgroups reads one gid from a valid pointer; the set*id
    // calls take plain integers.
    unsafe {
        check(libc::setgroups(1, &u.gid), &what)?;
        check(libc::setresgid(u.gid, u.gid, u.gid), &what)?;
        check(libc::setresuid(u.uid, u.uid, u.uid), &what)?;
        if u.uid != 0 && libc::setuid(0) == 0 {
            return Err(Error::Parse(format!("{what}: root could be regained")));
        }
    }
    Ok(())
}

/// Handles every filesystem and TCP access right of the newest ABI the
/// crate knows and grants none but creating and writing files beneath
/// `create_beneath`: nothing else can be opened, created or connected
/// from here on. Best effort, so older kernels get what they support and
/// kernels without Landlock get nothing, without a message.
fn landlock(create_beneath: Option<RawFd>) -> Result<LandlockStatus> {
    let abi = ABI::V6;
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.create())
        .map_err(|e| Error::Landlock(e.to_string()))?;
    if let Some(fd) = create_beneath {
        // SAFETY: the caller keeps the directory open across this call.
        let dir = unsafe { BorrowedFd::borrow_raw(fd) };
        ruleset = ruleset
            .add_rule(PathBeneath::new(
                dir,
                AccessFs::MakeReg | AccessFs::WriteFile,
            ))
            .map_err(|e| Error::Landlock(e.to_string()))?;
    }
    let status: RestrictionStatus = ruleset
        .restrict_self()
        .map_err(|e| Error::Landlock(e.to_string()))?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockStatus::Full,
        RulesetStatus::PartiallyEnforced => LandlockStatus::Partial,
        RulesetStatus::NotEnforced => LandlockStatus::Unsupported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_parses_uid_gid_and_refuses_the_rest() {
        assert_eq!(
            "1000:100".parse::<User>().unwrap(),
            User {
                uid: 1000,
                gid: 100
            }
        );
        for bad in ["1000", "a:b", "1000:", ":5", "-1:0"] {
            let e = bad.parse::<User>().unwrap_err().to_string();
            assert!(e.contains("UID:GID"), "{bad}: {e}");
        }
    }
}
