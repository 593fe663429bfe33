//! Runs the real `cairn` binary for end-to-end tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "e2e-admin-token";

pub fn cairn() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
    command
        .env("CAIRN_LOG", "warn")
        .env_remove("CAIRN_DATA_DIR");
    command
}

pub fn run(args: &[&str]) -> Output {
    cairn().args(args).output().expect("cairn runs")
}

pub struct Served {
    pub child: Child,
    pub base: String,
    pub stderr: std::sync::mpsc::Receiver<String>,
}

/// Starts `cairn serve` on a free port and waits for it to listen.
pub fn serve(data_dir: &Path, extra: &[&str]) -> Result<Served, String> {
    serve_with_env(data_dir, extra, &[])
}

/// Like [`serve`], with extra environment variables (such as `CAIRN_FAULT`).
pub fn serve_with_env(
    data_dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<Served, String> {
    let mut child = cairn()
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--http", "127.0.0.1:0"])
        .args(extra)
        .envs(env.iter().copied())
        .env("CAIRN_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match receiver.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(address) = line.strip_prefix("cairn listening on ") {
                    return Ok(Served {
                        child,
                        base: address.trim().to_string(),
                        stderr: receiver,
                    });
                }
                seen.push(line);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "cairn serve exited with {status}: {}",
                        seen.join("\n")
                    ));
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().map_err(|e| e.to_string())?;
                return Err(format!(
                    "cairn serve exited with {status}: {}",
                    seen.join("\n")
                ));
            }
        }
    }
    let _ = child.kill();
    Err(format!("cairn serve did not start: {}", seen.join("\n")))
}

impl Served {
    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("waits")
    }

    /// SIGKILL: no chance to sync anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn segments(data_dir: &Path) -> Vec<PathBuf> {
    let dir = data_dir.join("shards/000/log");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("log dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}
