//! A handshake prober inside a pod's network namespace: every round it starts a non-blocking
//! TCP handshake with each target address at once and records those that complete within the
//! round, so a pod that answers even once, for a fraction of a second, is seen.
//!
//! The prober is a thread of the test process that enters the network namespace of a process
//! of the pod (`/proc/<pid>/ns/net`), so it needs no tool in the pod's image; its packets leave
//! from the pod's address and cross the node's FORWARD chain like the pod's own. Connections
//! are closed with a reset at the end of each round.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::Error;

/// One completed handshake: when (since the prober started) and with whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub at: Duration,
    pub address: Ipv4Addr,
}

/// What a prober saw.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub handshakes: Vec<Handshake>,
    pub rounds: u32,
    /// The longest round (start of one to start of the next).
    pub longest_round: Duration,
}

/// A running prober; [`Prober::stop`] ends it and returns what it saw.
pub struct Prober {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Outcome, String>>,
    /// When it started: [`Handshake::at`] counts from here.
    pub started: Instant,
}

impl Prober {
    /// Probes TCP `port` of every `targets` address from the network namespace of process
    /// `pid`, one round per `round` (the round's answers are awaited at most that long), for at
    /// most `limit`.
    pub fn start(
        pid: u32,
        targets: Vec<Ipv4Addr>,
        port: u16,
        round: Duration,
        limit: Duration,
    ) -> Result<Prober, Error> {
        let netns =
            std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|source| Error::Io {
                what: format!("the network namespace of process {pid}"),
                source,
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            // SAFETY: setns on this thread only; the file descriptor is a namespace file.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns: {}", std::io::Error::last_os_error()));
            }
            drop(netns);
            let mut outcome = Outcome::default();
            while !flag.load(Ordering::SeqCst) && started.elapsed() < limit {
                let begun = Instant::now();
                probe_round(&targets, port, round, started, &mut outcome.handshakes)?;
                if let Some(rest) = round.checked_sub(begun.elapsed()) {
                    std::thread::sleep(rest);
                }
                outcome.rounds += 1;
                outcome.longest_round = outcome.longest_round.max(begun.elapsed());
            }
            Ok(outcome)
        });
        Ok(Prober {
            stop,
            thread,
            started,
        })
    }

    pub fn stop(self) -> Result<Outcome, Error> {
        self.stop.store(true, Ordering::SeqCst);
        let failed = |stderr: String| Error::Command {
            what: "the handshake prober".into(),
            stderr,
        };
        self.thread
            .join()
            .map_err(|_| failed("panicked".into()))?
            .map_err(failed)
    }
}

/// One round: a handshake started with every target, answers awaited until `round` is over.
fn probe_round(
    targets: &[Ipv4Addr],
    port: u16,
    round: Duration,
    started: Instant,
    seen: &mut Vec<Handshake>,
) -> Result<(), String> {
    let deadline = Instant::now() + round;
    let mut pending: Vec<(OwnedFd, Ipv4Addr)> = Vec::with_capacity(targets.len());
    for &address in targets {
        let socket = connect_nonblocking(address, port)?;
        pending.push((socket, address));
    }
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut polls: Vec<libc::pollfd> = pending
            .iter()
            .map(|(fd, _)| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            })
            .collect();
        // SAFETY: `polls` is a valid array of pollfd of that length.
        let n = unsafe {
            libc::poll(
                polls.as_mut_ptr(),
                polls.len() as libc::nfds_t,
                left.as_millis().max(1) as libc::c_int,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll: {e}"));
        }
        let mut still = Vec::with_capacity(pending.len());
        for ((fd, address), p) in pending.into_iter().zip(&polls) {
            if p.revents == 0 {
                still.push((fd, address));
                continue;
            }
            if socket_error(&fd) == 0 {
                seen.push(Handshake {
                    at: started.elapsed(),
                    address,
                });
            }
        }
        pending = still;
    }
    Ok(())
}

/// A TCP socket whose handshake with `address:port` has begun; closed with a reset.
fn connect_nonblocking(address: Ipv4Addr, port: u16) -> Result<OwnedFd, String> {
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let raw = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid descriptor and option value of the right size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(address).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `to` is a valid sockaddr_in of the given size.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&to as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    // EINPROGRESS, or a failure at once (no route): poll reports the outcome either way.
    let _ = r;
    Ok(fd)
}

/// The socket's pending error (0: connected).
fn socket_error(fd: &OwnedFd) -> i32 {
    let mut error: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid descriptor and buffer of the given size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut error as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 { -1 } else { error }
}
