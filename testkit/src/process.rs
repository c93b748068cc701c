//! One node as a real child process: spawned from the workspace's built
//! binary, its bound addresses read back from its `--ports-file`, its stderr
//! and stdout appended to a log file, signalled with real signals.
//!
//! Guarantees:
//! - a `Process` that is dropped kills its child (SIGKILL) and reaps it, so a
//!   test that panics leaves nothing running;
//! - children also get SIGKILL from the kernel if the thread that spawned them
//!   dies (`PR_SET_PDEATHSIG`), which covers a test binary killed outright;
//! - a restart appends to the same log, after a marker line, so the log
//!   tells the node's whole story.
//!
//! It deliberately does not restart anything by itself: what happens to a
//! node is always the test's explicit decision.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::wait::try_wait_until;

/// Environment variable that points at the directory holding the binaries.
pub const BIN_DIR_ENV: &str = "TESTKIT_BIN_DIR";

/// Where the node binaries are: `$TESTKIT_BIN_DIR`, else the target
/// directory this test binary was built into (so `CARGO_TARGET_DIR` and the
/// profile are honoured), else `$CARGO_TARGET_DIR/debug`, else
/// `<workspace>/target/debug`.
///
/// # Errors
/// When `name` is in none of them: the message says how to build it.
pub fn bin_path(name: &str) -> Result<PathBuf, String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default();
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        candidates.push(PathBuf::from(dir));
    } else {
        // target/<profile>/deps/<test binary>
        if let Some(dir) = std::env::current_exe().ok().and_then(|p| p.parent()?.parent().map(Path::to_path_buf)) {
            candidates.push(dir);
        }
        if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
            let dir = PathBuf::from(dir);
            let dir = if dir.is_absolute() { dir } else { workspace.join(dir) };
            candidates.push(dir.join("debug"));
        }
        candidates.push(workspace.join("target").join("debug"));
    }
    for dir in &candidates {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(format!(
        "the `{name}` binary was not found in {candidates:?}: run `cargo build --workspace --bins` first \
         (or set {BIN_DIR_ENV} to the directory that holds it)"
    ))
}

/// A node binary running (or not) as a child process.
pub struct Process {
    name: String,
    bin: PathBuf,
    args: Vec<String>,
    log_path: PathBuf,
    ports_path: PathBuf,
    child: Option<Child>,
    /// How the last child ended, once reaped.
    exit: Option<ExitStatus>,
    launches: u32,
}

impl Process {
    /// Spawns `bin` with `args` plus `--ports-file <dir>/<name>.ports.json`,
    /// its output going to `<dir>/<name>.log`.
    ///
    /// # Panics
    /// When the binary cannot be spawned.
    #[must_use]
    pub fn spawn(name: &str, bin: PathBuf, args: Vec<String>, dir: &Path) -> Process {
        let mut p = Process {
            name: name.to_owned(),
            bin,
            args,
            log_path: dir.join(format!("{name}.log")),
            ports_path: dir.join(format!("{name}.ports.json")),
            child: None,
            exit: None,
            launches: 0,
        };
        p.launch();
        p
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "{}: already running", self.name);
        let _ = std::fs::remove_file(&self.ports_path);
        self.launches += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("{}: cannot open log {}: {e}", self.name, self.log_path.display()));
        let _ = writeln!(
            log,
            "===== testkit: launch #{} of {}: {} {} --ports-file {}",
            self.launches,
            self.name,
            self.bin.display(),
            self.args.join(" "),
            self.ports_path.display()
        );
        let out = log.try_clone().unwrap_or_else(|e| panic!("{}: cannot clone log handle: {e}", self.name));
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args)
            .arg("--ports-file")
            .arg(&self.ports_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(log));
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{}: cannot spawn {}: {e}", self.name, self.bin.display()));
        self.child = Some(child);
        self.exit = None;
    }

    /// Starts the binary again, with new arguments, once the last child is gone.
    pub fn relaunch(&mut self, args: Vec<String>) {
        self.args = args;
        self.launch();
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    #[must_use]
    pub fn args(&self) -> &[String] {
        &self.args
    }

    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the child is alive (a stopped child is alive). Reaps it if it exited.
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else { return false };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.exit = Some(status);
                self.child = None;
                false
            }
            Err(_) => false,
        }
    }

    /// How the last child ended, if it has.
    #[must_use]
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit
    }

    /// Sends `signal` to the child.
    ///
    /// # Panics
    /// When there is no running child or the signal cannot be sent.
    pub fn signal(&mut self, signal: Signal) {
        let name = self.name.clone();
        assert!(self.is_running(), "{name}: cannot send {signal}: not running (exit: {:?})", self.exit);
        let pid = self.pid().and_then(|p| i32::try_from(p).ok()).expect("a running child has a pid");
        kill(Pid::from_raw(pid), signal).unwrap_or_else(|e| panic!("{name}: sending {signal} failed: {e}"));
    }

    /// SIGKILL and reap. Does nothing when the child is already gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            // After SIGKILL the wait is immediate (a stopped child is killed too).
            self.exit = child.wait().ok();
        }
    }

    /// Waits for the child to exit on its own, reaping it.
    ///
    /// # Errors
    /// When it is still running after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        if let Some(status) = self.exit.filter(|_| self.child.is_none()) {
            return Ok(status);
        }
        let r = try_wait_until(timeout, Duration::from_millis(20), || {
            let running = self.is_running();
            async move {
                if running {
                    Err("still running")
                } else {
                    Ok(())
                }
            }
        })
        .await;
        match (r, self.exit) {
            (Ok(()), Some(status)) => Ok(status),
            (Ok(()), None) => Err(format!("{}: exited, but its status could not be read", self.name)),
            (Err(e), _) => Err(format!("{}: did not exit: {e}", self.name)),
        }
    }

    /// Waits for the ports file the child writes once it has bound its ports.
    ///
    /// # Errors
    /// When the child exits first, or the file is not there within `timeout`;
    /// the message carries the tail of its log.
    pub async fn wait_ports(&mut self, timeout: Duration) -> Result<Value, String> {
        let path = self.ports_path.clone();
        let r = try_wait_until(timeout, Duration::from_millis(10), || {
            let running = self.is_running();
            let exit = self.exit;
            let path = path.clone();
            async move {
                match std::fs::read_to_string(&path).ok().and_then(|s| serde_json::from_str::<Value>(&s).ok()) {
                    Some(v) => Ok(Ok(v)),
                    None if !running => Ok(Err(format!("exited ({exit:?}) before writing {}", path.display()))),
                    None => Err(format!("{} not written yet", path.display())),
                }
            }
        })
        .await;
        let outcome = match r {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e,
            Err(e) => e.to_string(),
        };
        Err(format!("{}: {outcome}\n{}", self.name, self.log_tail(40)))
    }

    /// The last `lines` lines of the log, with its path.
    #[must_use]
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read(&self.log_path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        format!("--- {} ({}), last {} lines ---\n{tail}", self.name, self.log_path.display(), lines.min(all.len()))
    }

    /// Reads the whole log.
    #[must_use]
    pub fn log(&self) -> String {
        File::open(&self.log_path)
            .and_then(|mut f| {
                let mut s = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut s)?;
                Ok(String::from_utf8_lossy(&s).into_owned())
            })
            .unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Has the kernel SIGKILL the child when the spawning thread dies, so a test
/// binary that is killed itself (CI timeout, Ctrl-C) leaves no node running.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // two async-signal-safe system calls (prctl, getppid); it allocates nothing
    // and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The parent may have died between fork and prctl.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("parent exited before exec"));
            }
            Ok(())
        });
    }
}
