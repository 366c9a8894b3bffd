//! Long-lived TCP connections between network namespaces the tests made: an echo server in one
//! pod, clients in others that keep one connection open and tell whether it still carries data.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::background::Background;
use crate::{Error, netns};

/// A TCP server in a namespace: every connection it accepts is handed to a thread running
/// `handle` until the connection ends or the server is dropped.
struct Server {
    /// Stopped when dropped.
    _thread: Background,
}

impl Server {
    /// Listens on `port` of every address of namespace `ns` (IPv4); `what` names it in errors.
    fn start<H>(ns: &str, port: u16, what: &'static str, handle: H) -> Result<Self, Error>
    where
        H: Fn(TcpStream, &AtomicBool) + Clone + Send + 'static,
    {
        let ns = ns.to_string();
        let listen = move || {
            netns::enter(&ns)?;
            let l = TcpListener::bind(("0.0.0.0", port)).map_err(|source| Error::Io {
                what: format!("{what} on {port} in {ns}"),
                source,
            })?;
            l.set_nonblocking(true).map_err(|source| Error::Io {
                what: format!("configuring the {what}"),
                source,
            })?;
            Ok(l)
        };
        let serve = move |listener: TcpListener, flag: Arc<AtomicBool>| {
            let mut served = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (flag, handle) = (flag.clone(), handle.clone());
                        served.push(std::thread::spawn(move || handle(conn, &flag)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            for t in served {
                let _ = t.join();
            }
        };
        Ok(Self {
            _thread: Background::start(what, listen, serve)?,
        })
    }
}

/// An echo server in a namespace: every connection gets back what it sends, until the server
/// is dropped.
pub struct EchoServer {
    /// Stopped when dropped.
    _server: Server,
}

impl EchoServer {
    /// Listens on `port` of every address of namespace `ns` (IPv4).
    pub fn start(ns: &str, port: u16) -> Result<Self, Error> {
        Server::start(ns, port, "echo server", echo).map(|_server| Self { _server })
    }
}

fn echo(mut conn: TcpStream, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::Relaxed) {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// A server in a namespace that talks first: every connection gets a numbered line every
/// `every`, unasked, until the connection breaks or the server is dropped. The connections a
/// cut must keep cut even though their client never speaks again.
pub struct TalkingServer {
    /// Stopped when dropped.
    _server: Server,
}

impl TalkingServer {
    /// Listens on `port` of every address of namespace `ns` (IPv4).
    pub fn start(ns: &str, port: u16, every: Duration) -> Result<Self, Error> {
        Server::start(ns, port, "talking server", move |conn, stop| {
            talk(conn, every, stop)
        })
        .map(|_server| Self { _server })
    }
}

fn talk(mut conn: TcpStream, every: Duration, stop: &AtomicBool) {
    // Bounded writes: once the peer stops acknowledging, the send buffer fills and a write
    // would block for good.
    let _ = conn.set_write_timeout(Some(Duration::from_millis(200)));
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        match conn.write_all(format!("palisade-{n}\n").as_bytes()) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
        std::thread::sleep(every);
    }
}

/// One TCP connection opened from inside a namespace, kept open; the socket stays in the
/// namespace it was made in, whichever thread uses it.
pub struct Connection {
    stream: TcpStream,
    sent: u64,
    /// What came back and was not yet matched to a message.
    pending: Vec<u8>,
}

impl Connection {
    /// Connects from namespace `ns` to `ip`:`port` (bounded by 2 s).
    pub fn open(ns: &str, ip: IpAddr, port: u16) -> Result<Self, Error> {
        let ns = ns.to_string();
        let stream = std::thread::spawn(move || -> Result<TcpStream, Error> {
            netns::enter(&ns)?;
            TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(2)).map_err(
                |source| Error::Io {
                    what: format!("connecting from {ns} to {ip}:{port}"),
                    source,
                },
            )
        })
        .join()
        .map_err(|_| Error::Command {
            what: "connecting".into(),
            stderr: "the connecting thread panicked".into(),
        })??;
        Ok(Self {
            stream,
            sent: 0,
            pending: Vec::new(),
        })
    }

    /// Sends a numbered message and waits up to `timeout` for it to come back: whether the
    /// connection still carries data both ways. Late answers to earlier messages are skipped.
    pub fn echoes(&mut self, timeout: Duration) -> bool {
        self.sent += 1;
        let message = format!("palisade-{}\n", self.sent);
        if self.stream.write_all(message.as_bytes()).is_err() {
            return false;
        }
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(at) = find(&self.pending, message.as_bytes()) {
                self.pending.drain(..at + message.len());
                return true;
            }
            match self.read_once(start, timeout) {
                Received::Data(data) => self.pending.extend_from_slice(&data),
                Received::Nothing => {}
                Received::Closed | Received::TimeUp => return false,
            }
        }
        false
    }

    /// Without sending anything, whether data arrives within `timeout` (what a client of a
    /// [`TalkingServer`] sees while the connection still carries the server's data).
    pub fn hears(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            match self.read_once(start, timeout) {
                Received::Data(_) => return true,
                Received::Nothing => {}
                Received::Closed | Received::TimeUp => return false,
            }
        }
        false
    }

    /// One read of what arrived, waiting at most 50 ms and not past `timeout` from `start`.
    fn read_once(&mut self, start: Instant, timeout: Duration) -> Received {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero()
            || self
                .stream
                .set_read_timeout(Some(left.min(Duration::from_millis(50))))
                .is_err()
        {
            return Received::TimeUp;
        }
        let mut buf = [0u8; 256];
        match self.stream.read(&mut buf) {
            Ok(0) => Received::Closed,
            Ok(n) => Received::Data(buf[..n].to_vec()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Received::Nothing
            }
            Err(_) => Received::Closed,
        }
    }

    /// Listens (never sending) every `every` until nothing arrived within `timeout`, for at most
    /// `limit`: when the server's data stopped coming (the start of the silent wait), or `None`
    /// when it came all along.
    pub fn falls_silent_within(
        &mut self,
        every: Duration,
        timeout: Duration,
        limit: Duration,
    ) -> Option<Instant> {
        first_failure(every, limit, || self.hears(timeout))
    }

    /// Exchanges messages every `every` until one does not come back within `timeout`, for at
    /// most `limit`: when the connection stopped carrying data (the time the last message was
    /// sent), or `None` when it carried data all along.
    pub fn stops_within(
        &mut self,
        every: Duration,
        timeout: Duration,
        limit: Duration,
    ) -> Option<Instant> {
        first_failure(every, limit, || self.echoes(timeout))
    }
}

/// What one read of a [`Connection`] gave.
enum Received {
    Data(Vec<u8>),
    /// Nothing yet.
    Nothing,
    /// The connection ended (or failed).
    Closed,
    /// The time to wait is over.
    TimeUp,
}

/// Runs `works` every `every` for at most `limit`: when the first run that failed began, or
/// `None` when every run worked.
fn first_failure(
    every: Duration,
    limit: Duration,
    mut works: impl FnMut() -> bool,
) -> Option<Instant> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let began = Instant::now();
        if !works() {
            return Some(began);
        }
        std::thread::sleep(every);
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A long-lived TCP connection from inside a real pod (`kubectl exec` of busybox `nc`): it
/// sends a numbered line every 100 ms to an echo server, and the time each line came back is
/// recorded. Dropping it ends the exec.
pub struct PodConnection {
    child: std::process::Child,
    echoes: Arc<std::sync::Mutex<Vec<std::time::SystemTime>>>,
    reader: Option<JoinHandle<()>>,
}

impl PodConnection {
    /// From pod `from` (`namespace/name`) to `ip`:`port`, sending `lines` lines at most.
    pub fn open(
        cp: &crate::ControlPlane,
        from: &str,
        ip: &str,
        port: u16,
        lines: u32,
    ) -> Result<Self, Error> {
        let script = format!(
            "i=0; while [ $i -lt {lines} ]; do i=$((i+1)); echo $i; sleep 0.1; done | nc {ip} {port}"
        );
        Self::exec(cp, from, &script)
    }

    /// From pod `from` to a server that talks first at `ip`:`port`, sending nothing for
    /// `seconds`: every line the server sends is recorded as it arrives.
    pub fn listen(
        cp: &crate::ControlPlane,
        from: &str,
        ip: &str,
        port: u16,
        seconds: u32,
    ) -> Result<Self, Error> {
        Self::exec(cp, from, &format!("sleep {seconds} | nc {ip} {port}"))
    }

    /// Runs `script` in pod `from`, recording when each line of its output arrives.
    fn exec(cp: &crate::ControlPlane, from: &str, script: &str) -> Result<Self, Error> {
        use std::io::BufRead;
        let (ns, pod) = from.split_once('/').unwrap_or(("default", from));
        let mut child = std::process::Command::new(cp.kubectl_path())
            .args(["exec", "-n", ns, pod, "--", "sh", "-c", script])
            .env("KUBECONFIG", &cp.kubeconfig)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|source| Error::Io {
                what: format!("kubectl exec into {from}"),
                source,
            })?;
        let stdout = child.stdout.take().ok_or_else(|| Error::Command {
            what: format!("kubectl exec into {from}"),
            stderr: "no stdout".into(),
        })?;
        let echoes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let reader = {
            let echoes = echoes.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout).lines() {
                    if line.is_err() {
                        return;
                    }
                    echoes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(std::time::SystemTime::now());
                }
            })
        };
        Ok(Self {
            child,
            echoes,
            reader: Some(reader),
        })
    }

    /// When each echo (or line of a server that talks first) came back, in order.
    pub fn echoes(&self) -> Vec<std::time::SystemTime> {
        self.echoes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits (at most `limit`) until `n` echoes came back.
    pub fn wait_for(&self, n: usize, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.echoes().len() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for PodConnection {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}
