//! `palisade-e2e up` brings a local cluster up and leaves it running; `palisade-e2e down`
//! tears it down. `serve` is what `up` runs in the background.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palisade_e2e::{ControlPlane, Network};

const NODES: [&str; 2] = ["node-1", "node-2"];

/// Where `up` records the running cluster (`PALISADE_E2E_STATE` moves it).
fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PALISADE_E2E_STATE") {
        return PathBuf::from(dir);
    }
    palisade_e2e::tools::bin_dir()
        .parent()
        .map(|p| p.join("cluster"))
        .unwrap_or_else(|| PathBuf::from("/tmp/palisade-cluster"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("up") => up(),
        Some("down") => down(),
        Some("serve") => serve(),
        Some("demo") => demo(args.iter().any(|a| a == "--keep")),
        _ => {
            eprintln!(
                "usage: palisade-e2e up | down | demo [--keep]\n  up    start kube-apiserver, etcd and two network-namespace nodes, and leave them running\n  down  stop them and remove every namespace they made\n  demo  show Palisade working end to end (--keep: leave it running until Ctrl-C)"
            );
            2
        }
    };
    std::process::exit(code);
}

fn up() -> i32 {
    let dir = state_dir();
    let state = dir.join("state");
    if let Ok(text) = std::fs::read_to_string(&state) {
        println!("a local cluster is already running:\n{text}");
        return 0;
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("palisade-e2e: {}: {e}", dir.display());
        return 1;
    }
    let Ok(log) = std::fs::File::create(dir.join("serve.log")) else {
        eprintln!(
            "palisade-e2e: cannot write {}",
            dir.join("serve.log").display()
        );
        return 1;
    };
    let Ok(me) = std::env::current_exe() else {
        return 1;
    };
    let mut cmd = Command::new(me);
    cmd.arg("serve")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log);
    // SAFETY: setsid in the child detaches it from this terminal's session.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::setsid();
            Ok(())
        });
    }
    if let Err(e) = cmd.spawn() {
        eprintln!("palisade-e2e: starting the cluster: {e}");
        return 1;
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if let Ok(text) = std::fs::read_to_string(&state) {
            println!("{text}");
            return 0;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!(
        "palisade-e2e: the cluster did not come up within 120 s; see {}",
        dir.join("serve.log").display()
    );
    1
}

fn down() -> i32 {
    let state = state_dir().join("state");
    let Ok(text) = std::fs::read_to_string(&state) else {
        println!("no local cluster is running");
        return 0;
    };
    let pid: i32 = text
        .lines()
        .find_map(|l| l.strip_prefix("pid: "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0);
    // SAFETY: asks the serve process recorded in the state file to stop.
    if pid > 0 && unsafe { libc::kill(pid, libc::SIGTERM) } == 0 {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) && unsafe { libc::kill(pid, 0) } == 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let _ = std::fs::remove_file(&state);
    println!("local cluster stopped");
    0
}

fn serve() -> i32 {
    // Signals are taken by sigwait below, so block them before any thread starts.
    // SAFETY: plain signal-mask manipulation on this thread (inherited by the threads it starts).
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let cp = match ControlPlane::start() {
        Ok(cp) => cp,
        Err(e) => {
            eprintln!("palisade-e2e: {e}");
            return 1;
        }
    };
    let net = match Network::create(&NODES) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("palisade-e2e: {e}");
            return 1;
        }
    };
    let mut text = format!(
        "pid: {}\nkubeconfig: {}\nserver: {}\nnodes (network namespaces; `ip netns exec NAME sh` to look around):\n",
        std::process::id(),
        cp.kubeconfig.display(),
        cp.server
    );
    for n in net.nodes() {
        text.push_str(&format!(
            "  {}: netns {}, address {}, gateway {}\n",
            n.name, n.netns.name, n.address, n.gateway
        ));
    }
    text.push_str("pods get namespaces named palisade-<network>-pod-<namespace>-<name>\nstop with: palisade-e2e down");
    let state = state_dir().join("state");
    if let Err(e) = std::fs::write(&state, &text) {
        eprintln!("palisade-e2e: writing {}: {e}", state.display());
        return 1;
    }
    let mut sig = 0;
    // SAFETY: waits for one of the blocked signals.
    unsafe { libc::sigwait(&set, &mut sig) };
    let _ = std::fs::remove_file(&state);
    drop(net);
    drop(cp);
    0
}

/// The demo, with the Palisade binaries built next to this one.
fn demo(keep: bool) -> i32 {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from))
        .unwrap_or_default();
    let bins = match palisade_e2e::demo::Binaries::in_dir(&dir) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("palisade-e2e demo: {e}");
            return 2;
        }
    };
    let mut stdout = std::io::stdout();
    match palisade_e2e::demo::run(&bins, keep, &mut stdout) {
        Ok(outcome) if outcome.failures.is_empty() => 0,
        Ok(_) => 1,
        Err(e) => {
            eprintln!("palisade-e2e demo: {e}");
            1
        }
    }
}
