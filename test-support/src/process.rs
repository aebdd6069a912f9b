//! Service binaries run as real processes by tests and benchmarks: started with a clean
//! environment, their stdout read as the JSON log lines it is, killed when dropped.

use serde_json::Value;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// `binary` with nothing of the caller's environment but `PATH`, run in the temporary
/// directory: no developer's `MEDBOOK_*` variable or `config/` file reaches it.
pub fn service_command(binary: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir());
    cmd
}

/// A running service binary and its log; killed (and reaped) when dropped, a failed
/// test included.
pub struct ServiceProcess {
    pub child: Child,
    /// Its stdout, one value a line, read as it comes (so the pipe never fills). A line
    /// that is not JSON arrives as a JSON string, so that a test can tell. Disconnected
    /// once the process has exited and every line was read.
    pub lines: Receiver<Value>,
}

impl ServiceProcess {
    /// Spawns `cmd` with its stdout piped and read on a thread of its own; stderr is
    /// left as `cmd` says.
    pub fn spawn(cmd: &mut Command) -> Self {
        Self::spawn_logging(cmd, None)
    }

    /// [`Self::spawn`], also appending each line as it was written to the file `log`
    /// (created with its directory): the process's log, kept for whoever reads a failure.
    pub fn spawn_logging(cmd: &mut Command, log: Option<&Path>) -> Self {
        let mut log = log.map(|path| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).unwrap();
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
        });
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(file) = log.as_mut() {
                    let _ = writeln!(file, "{line}");
                }
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                // The receiver may be gone (the test no longer reads); keep draining.
                let _ = tx.send(value);
            }
        });
        Self { child, lines }
    }

    /// The next log line, within `timeout`; panics naming `what` otherwise, or when the
    /// process exits first.
    pub fn next_line(&self, what: &str, timeout: Duration) -> Value {
        match self.lines.recv_timeout(timeout) {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => {
                panic!("no log line within {timeout:?} while waiting for {what}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the process exited while waiting for {what}")
            }
        }
    }

    /// Reads the log up to the first line whose `message` is `message` and returns that
    /// line; panics when none comes within `timeout`.
    pub fn wait_for(&self, message: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let what = format!("the log line `{message}`");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.next_line(&what, left);
            if v["message"] == message {
                return v;
            }
        }
    }

    /// Sends `sig` (`-TERM`, `-KILL`, `-STOP`, …).
    pub fn signal(&self, sig: &str) {
        crate::signal(&self.child, sig);
    }

    /// Waits for the exit; panics after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        crate::wait_for_exit(&mut self.child, timeout)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
