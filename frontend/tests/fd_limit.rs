//! The accept loop under file-descriptor exhaustion: the real binary, started
//! with a low open-files limit and flooded with connections, pauses between
//! failed accepts instead of spinning, and serves again once descriptors free up.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Kills and reaps the child however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch directory removed at the end.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn prlimit_available() -> bool {
    Command::new("prlimit")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Clock ticks per second, for /proc/<pid>/stat.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User plus system CPU time of a process, in seconds.
fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let (_, rest) = stat.rsplit_once(')').expect("stat has a command name");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: f64 = fields[11].parse().expect("utime");
    let stime: f64 = fields[12].parse().expect("stime");
    (utime + stime) / ticks
}

fn read_ports_file(path: &Path, child: &mut Child) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            let ports: Value = serde_json::from_str(&text).expect("ports file is JSON");
            return ports["json"].as_str().expect("json address").parse().expect("a socket address");
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("frontend exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "no ports file after 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET /health`; `None` if there is no complete answer within `timeout`.
fn health(addr: SocketAddr, timeout: Duration) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let body = serde_json::from_str(out.split_once("\r\n\r\n")?.1).ok()?;
    Some((status, body))
}

#[test]
fn the_accept_loop_backs_off_when_out_of_file_descriptors_and_recovers() {
    if !prlimit_available() {
        eprintln!("SKIPPED the_accept_loop_backs_off_when_out_of_file_descriptors_and_recovers: `prlimit` (util-linux) not found");
        return;
    }
    let dir = Scratch(std::env::temp_dir().join(format!("frontend-fd-limit-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("scratch dir");
    let ports = dir.0.join("ports.json");
    let log = std::fs::File::create(dir.0.join("stderr.log")).expect("log file");
    let child = Command::new("prlimit")
        .arg("--nofile=64:64")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_frontend"))
        .args(["--host", "127.0.0.1", "--port", "0", "--handshake-timeout-ms", "60000", "--ports-file"])
        .arg(&ports)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn prlimit");
    let mut child = Killed(child);
    let pid = child.0.id();
    let addr = read_ports_file(&ports, &mut child.0);
    let (status, _) = health(addr, Duration::from_secs(5)).expect("health answers at start");
    assert_eq!(status, 200);

    // 100 connections that send nothing: the node holds each one open
    // waiting for a request head, and runs out of its 64 descriptors.
    let conns: Vec<TcpStream> =
        (0..100).map(|_| TcpStream::connect(addr).expect("connect (the backlog takes it)")).collect();
    std::thread::sleep(Duration::from_millis(300));

    let ticks = clock_ticks();
    let before = cpu_seconds(pid, ticks);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_seconds(pid, ticks) - before;
    assert!(used < 0.3, "the accept loop spins under EMFILE: {used:.2} s of CPU in 1 s");

    drop(conns);
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        if let Some((status, body)) = health(addr, Duration::from_secs(2)) {
            assert_eq!(status, 200);
            break body;
        }
        assert!(Instant::now() < deadline, "no /health answer within 10 s of freeing the descriptors");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(body["status"], "ok");
    let accept_errors = body["stats"]["accept_errors"].as_u64().expect("accept_errors");
    assert!(accept_errors > 0, "the limit was never hit: {body}");
    // With back-off from 5 ms doubling to 1 s, about a dozen failures fit in the test's time, not thousands.
    assert!(accept_errors < 100, "accept retried {accept_errors} times: no back-off");
    assert!(child.0.try_wait().expect("try_wait").is_none(), "the node is still running");
}
