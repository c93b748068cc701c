//! The `state-server` binary: help, refusing to start without a key, the
//! ports file, and a clean stop on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_state-server");

#[test]
fn help_explains_itself() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in ["--cluster-key", "SCC_AUTH_KEY", "--settle-up-ms", "--rebuild-wait-ms", "--ports-file", "/ready"] {
        assert!(help.contains(flag), "--help does not mention {flag}:\n{help}");
    }
}

#[test]
fn it_refuses_to_start_without_a_cluster_key_and_names_the_flag() {
    let out = Command::new(BIN).env_remove("SCC_AUTH_KEY").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--cluster-key"), "{err}");
}

#[test]
fn it_writes_the_ports_file_and_stops_cleanly_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("state-server-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ports = dir.join("ports.json");
    let mut child = Command::new(BIN)
        .args(["--host", "127.0.0.1", "--port", "0", "--http-port", "0", "--ports-file"])
        .arg(&ports)
        .env("SCC_AUTH_KEY", "k")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let json = loop {
        if let Ok(s) = std::fs::read_to_string(&ports) {
            break s;
        }
        assert!(Instant::now() < deadline, "no ports file");
        std::thread::sleep(Duration::from_millis(20));
    };
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for key in ["control", "http"] {
        let addr: std::net::SocketAddr = v[key].as_str().unwrap().parse().unwrap();
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{json}");
        std::net::TcpStream::connect(addr).unwrap();
    }
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
