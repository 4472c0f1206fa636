//! The runtime's log, in runc's formats: engines pass `--log FILE
//! --log-format json` and, when a command fails, show the `msg` of the last
//! line to their user (containerd, Docker) or copy it (Podman).

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

/// Where messages go and how they look.
#[derive(Debug, Clone, Default)]
pub struct Log {
    /// The `--log` file; stderr when absent.
    pub file: Option<PathBuf>,
    /// `--log-format json` (runc's logrus JSON); text otherwise.
    pub json: bool,
}

impl Log {
    /// Logs an error.
    pub fn error(&self, msg: &str) {
        self.write("error", msg);
    }

    /// Logs a warning (a failed poststart or poststop hook, a cleanup step).
    pub fn warn(&self, msg: &str) {
        self.write("warning", msg);
    }

    fn write(&self, level: &str, msg: &str) {
        let time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let line = if self.json {
            serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
        } else {
            format!("time={time:?} level={level} msg={msg:?}")
        };
        let appended = self.file.as_ref().map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| writeln!(f, "{line}"))
        });
        // Without a log file, or when it cannot be written, the message
        // still reaches someone.
        if !matches!(appended, Some(Ok(()))) {
            eprintln!("ukvm-oci: {level}: {msg}");
        }
    }
}
