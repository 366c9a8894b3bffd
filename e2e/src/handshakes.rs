//! A handshake prober inside a pod's network namespace: every round it starts a non-blocking
//! TCP handshake with each target address at once and records those that complete within the
//! round, so a pod that answers even once, for a fraction of a second, is seen.
//!
//! The prober is a thread of the test process that enters the network namespace of a process
//! of the pod (`/proc/<pid>/ns/net`), so it needs no tool in the pod's image; its packets leave
//! from the pod's address and cross the node's FORWARD chain like the pod's own. Connections
//! are closed with a reset at the end of each round.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, connect, getsockopt, setsockopt, socket, sockopt,
};

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
            // Only this thread enters the pod's network namespace.
            setns(&netns, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}"))?;
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
        let mut polls: Vec<PollFd<'_>> = pending
            .iter()
            .map(|(fd, _)| PollFd::new(fd.as_fd(), PollFlags::POLLOUT))
            .collect();
        let timeout =
            PollTimeout::try_from(left.max(Duration::from_millis(1))).unwrap_or(PollTimeout::MAX);
        match poll(&mut polls, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        let answered: Vec<bool> = polls
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(polls);
        let mut still = Vec::with_capacity(pending.len());
        for ((fd, address), answered) in pending.into_iter().zip(answered) {
            if !answered {
                still.push((fd, address));
                continue;
            }
            if getsockopt(&fd, sockopt::SocketError) == Ok(0) {
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
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    // Closing with a reset: linger on, for no time.
    let reset = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&fd, sockopt::Linger, &reset).map_err(|e| format!("SO_LINGER: {e}"))?;
    // EINPROGRESS, or a failure at once (no route): poll reports the outcome either way.
    let _ = connect(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(address, port)),
    );
    Ok(fd)
}
