//! Small helpers the end-to-end tests of every component share.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A command's stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A command's stdout when it succeeded; its output as the error otherwise.
pub fn succeeded(what: impl Into<String>, o: Output) -> Result<String, crate::Error> {
    if !o.status.success() {
        return Err(crate::Error::Command {
            what: what.into(),
            stderr: text(&o),
        });
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// [`succeeded`] for tests: `o`'s stdout, or a panic naming `what` with its output.
pub fn assert_success(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Waits up to `limit` for `child` to exit and returns its output; if it does not exit in time,
/// kills it and returns what it wrote as the error. For children whose output fits the pipes.
pub fn wait_with_timeout(mut child: Child, limit: Duration) -> Result<Output, Output> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let exited = matches!(child.try_wait(), Ok(Some(_)));
    if !exited {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap_or_else(|_| Output {
        status: std::process::ExitStatus::default(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    });
    if exited { Ok(output) } else { Err(output) }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// GET on a plain-HTTP loopback port (the admin ports): status and body, or None when nothing
/// answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_at(std::net::SocketAddr::from(([127, 0, 0, 1], port)), path)
}

/// GET on a plain-HTTP address (e.g. an enforcer's admin port inside a node namespace).
pub fn http_get_at(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        code,
        out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string(),
    ))
}

/// Polls `get` every 200 ms until it returns `want`; panics after `limit` with the last value.
pub fn eventually<T: PartialEq + std::fmt::Debug>(
    what: &str,
    limit: Duration,
    want: T,
    get: impl Fn() -> T,
) {
    let start = Instant::now();
    loop {
        let got = get();
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: want {want:?}, still {got:?} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `check` every 300 ms until it returns `Some`; panics naming `what` after `limit`.
pub fn wait_until<T>(limit: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    wait_until_or(limit, what, check, String::new)
}

/// [`wait_until`], saying what `explain` finds when it gives up.
pub fn wait_until_or<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    explain: impl FnOnce() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if start.elapsed() > limit {
            panic!("{what}: not within {limit:?}\n{}", explain());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Polls `check` every 300 ms until it returns `Ok`; panics with the last `Err` after `limit`.
pub fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > limit => panic!("after {limit:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// A child process killed when the guard drops, so a failing test leaves nothing running.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Sends SIGTERM and waits up to `limit` for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        signal(self.0.id() as i32, Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

/// The value of one series in Prometheus text, e.g. `palisade_operator_leader` or
/// `palisade_enforcer_syncs_total{result="error"}`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Starts `command` with its stderr (where Palisade's processes log) written to `log`; killed
/// when the guard drops.
pub fn spawn_logged(
    mut command: std::process::Command,
    log: &std::path::Path,
) -> Result<Process, crate::Error> {
    let file = std::fs::File::create(log).map_err(|source| crate::Error::Io {
        what: format!("creating {}", log.display()),
        source,
    })?;
    let child = command
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .map_err(|source| crate::Error::Io {
            what: format!("starting {:?}", command.get_program()),
            source,
        })?;
    Ok(Process(child))
}

/// Whether process `pid` exists (signal 0 checks without sending anything).
pub fn alive(pid: i32) -> bool {
    pid > 0 && kill(Pid::from_raw(pid), None).is_ok()
}

/// Sends `signal` to process `pid`; whether it was delivered (a process gone meanwhile is not).
pub fn signal(pid: i32, signal: Signal) -> bool {
    pid > 0 && kill(Pid::from_raw(pid), signal).is_ok()
}
