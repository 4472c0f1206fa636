//! The kernel log, where `--seccomp=log` has the kernel record each call
//! a filter would have refused: an audit record of type 1326 (`SECCOMP`)
//! with the process id and the system call number, printed to the kernel
//! log (`/dev/kmsg`, `dmesg`) when no audit daemon takes it.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

/// Panics with a message saying what to change unless the kernel logs
/// `SECCOMP_RET_LOG` actions (`/proc/sys/kernel/seccomp/actions_logged`
/// lists `log`).
pub fn assert_log_action_logged() {
    let path = "/proc/sys/kernel/seccomp/actions_logged";
    let logged = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}: this kernel has no seccomp logging"));
    assert!(
        logged.split_whitespace().any(|a| a == "log"),
        "{path} is \"{}\": the kernel does not log --seccomp=log's calls; add `log` \
         (echo \"{} log\" > {path})",
        logged.trim(),
        logged.trim()
    );
}

/// `/dev/kmsg`, read from the records that come after it was opened.
pub struct Kmsg(File);

impl Kmsg {
    /// Opens the kernel log past its last record. Needs root (or
    /// CAP_SYSLOG where `dmesg_restrict` is set).
    pub fn open_at_end() -> Kmsg {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .unwrap_or_else(|e| panic!("/dev/kmsg: {e}: reading the kernel log needs root"));
        file.seek(SeekFrom::End(0))
            .expect("seek to the end of /dev/kmsg");
        Kmsg(file)
    }

    /// The records logged since the last call.
    fn drain(&mut self) -> Vec<String> {
        let mut records = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => records.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // EPIPE: records were overwritten before we read them;
                // reading goes on from the oldest left.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) => panic!("reading /dev/kmsg: {e}"),
            }
        }
        records
    }

    /// The seccomp audit records of process `pid` logged since the log
    /// was opened, as `(system call number, record)`. Waits until one
    /// names `until` (the kernel's audit thread prints them a little
    /// later) or `limit` passes.
    pub fn seccomp_records(
        &mut self,
        pid: u32,
        until: Option<i64>,
        limit: Duration,
    ) -> Vec<(i64, String)> {
        let deadline = Instant::now() + limit;
        let mut found = Vec::new();
        loop {
            found.extend(
                self.drain()
                    .into_iter()
                    .filter_map(|r| seccomp_record(&r, pid)),
            );
            let done = until.is_some_and(|nr| found.iter().any(|(n, _)| *n == nr));
            if done || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `record`'s system call number if it is a seccomp audit record of `pid`.
fn seccomp_record(record: &str, pid: u32) -> Option<(i64, String)> {
    let fields: Vec<&str> = record.split_whitespace().collect();
    let has = |f: &str| fields.contains(&f);
    if !has("type=1326") || !has(&format!("pid={pid}")) {
        return None;
    }
    let nr = fields
        .iter()
        .find_map(|f| f.strip_prefix("syscall="))?
        .parse()
        .ok()?;
    Some((nr, record.trim().to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_audit_record_gives_its_system_call() {
        let r =
            "12,5071,10923819802,-;audit: type=1326 audit(1796058538.371:497): auid=4294967295 \
                 uid=0 gid=0 ses=4294967295 pid=731 comm=\"child\" exe=\"/x\" sig=0 arch=c000003e \
                 syscall=41 compat=0 ip=0x7f4dc205edc7 code=0x7ffc0000\n";
        assert_eq!(super::seccomp_record(r, 731).map(|x| x.0), Some(41));
        assert_eq!(super::seccomp_record(r, 73), None);
        assert_eq!(
            super::seccomp_record("6,1,2,-;audit: type=1300 pid=731 syscall=41", 731),
            None
        );
    }
}
