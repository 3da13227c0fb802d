//! `cria serve` as a child process for tests: started on a free loopback
//! port, its address read from its one stdout line, killed when the test
//! ends, pass or fail.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cria serve --model MODEL ARGS...` with `CRIA_HOME=home` on a free
/// loopback port; returns it and its address once it listens (the model
/// is loaded by then).
pub fn cria_serve(home: &Path, model: &str, args: &[&str], env: &[(&str, &str)]) -> (Running, SocketAddr) {
    let mut child = Command::new(super::cria_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--model", model])
        .args(args)
        .envs(env.iter().copied())
        .env("CRIA_HOME", home)
        .env("CRIA_LOG", "cria=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cria serve starts");
    let stdout = child.stdout.take().expect("its stdout");
    let running = Running(child);
    (running, super::http::listening_address(stdout, Duration::from_secs(120)))
}
