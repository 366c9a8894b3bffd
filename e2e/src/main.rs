//! `palisade-e2e up` brings a local cluster up and leaves it running; `palisade-e2e down`
//! tears it down. `serve` is what `up` runs in the background; it owns the cluster's processes,
//! so `restart` and `pause` ask it (through a Unix socket next to the state file) to act on them.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use palisade_e2e::real_nodes::Target;
use palisade_e2e::util::{alive, signal};
use palisade_e2e::{ControlPlane, Network, RealCluster, real_nodes};

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
        Some("up") => match imports(&args) {
            Ok(files) => up(args.iter().any(|a| a == "--real-nodes"), &files),
            Err(e) => {
                eprintln!("palisade-e2e up: {e}");
                2
            }
        },
        Some("down") => down(),
        Some("serve") => match imports(&args) {
            Ok(files) => serve(args.iter().any(|a| a == "--real-nodes"), &files),
            Err(e) => {
                println!("palisade-e2e: {e}");
                1
            }
        },
        Some("demo") => demo(args.iter().any(|a| a == "--keep")),
        Some("soak") => soak(&args),
        Some("restart") => match args.get(2) {
            Some(target) => ask_serve(&format!("restart {target}")),
            None => usage(),
        },
        Some("pause") => match (args.get(2), seconds(&args)) {
            (Some(target), Ok(seconds)) => ask_serve(&format!("pause {target} {seconds}")),
            (_, Err(e)) => {
                eprintln!("palisade-e2e pause: {e}");
                2
            }
            (None, _) => usage(),
        },
        _ => usage(),
    };
    std::process::exit(code);
}

fn usage() -> i32 {
    eprintln!(
        "usage: palisade-e2e up [--real-nodes [--import FILE.tar]...] | down | demo [--keep] | soak [--minutes N] [--pods N]\n                    | restart TARGET | pause TARGET [--seconds N]\n  up       start kube-apiserver, etcd and two network-namespace nodes, and leave them running\n           --real-nodes: two real nodes instead (kubelet, containerd, kube-proxy), with the\n           controller-manager and scheduler, and the image of e2e/image.sh imported\n           --import FILE.tar: also import this docker-archive image into every real node\n  down     stop them and remove every namespace they made\n  restart  stop TARGET of the running cluster (SIGTERM, SIGKILL after 10 s) and start it again\n           with the same arguments; returns once it answers again\n  pause    freeze TARGET (SIGSTOP) for N seconds (default 5), then let it go on (SIGCONT)\n           TARGET: etcd, kube-apiserver, kube-controller-manager, kube-scheduler (the last\n           two with --real-nodes), or a real node's node-1/kubelet, node-1/containerd,\n           node-1/kube-proxy (node-2/...); containers keep running through a containerd\n           restart\n  demo     show Palisade working end to end (--keep: leave it running until Ctrl-C)\n  soak     the chaos soak on two real nodes for N minutes (default 10): faults on a seeded\n           schedule (PALISADE_SOAK_SEED replays one) while the cluster churns, then the\n           leak check (helm uninstall, a fresh install compared); exits 1 if a promise broke\n           --pods N: N more small pods (a Deployment spread over both nodes, at most about\n           250) in a namespace opted in to the baseline, created before the faults start"
    );
    2
}

/// `--seconds N` (default 5).
fn seconds(args: &[String]) -> Result<u64, String> {
    match args.iter().position(|a| a == "--seconds") {
        None => Ok(5),
        Some(i) => args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "--seconds needs a whole number".to_string()),
    }
}

/// Where `serve` takes `restart` and `pause` requests.
fn control_socket() -> PathBuf {
    state_dir().join("control.sock")
}

/// Sends one request line to the running cluster's `serve` and prints its answer: 0 when it
/// did it, 1 when it could not, 2 when no cluster runs.
fn ask_serve(request: &str) -> i32 {
    use std::io::{BufRead, Write};
    let mut stream = match std::os::unix::net::UnixStream::connect(control_socket()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "palisade-e2e: no running cluster answers at {} ({e}); start one with palisade-e2e up",
                control_socket().display()
            );
            return 2;
        }
    };
    if let Err(e) = writeln!(stream, "{request}") {
        eprintln!("palisade-e2e: {e}");
        return 1;
    }
    let mut answer = String::new();
    let _ = std::io::BufReader::new(stream).read_line(&mut answer);
    match answer.trim_end().strip_prefix("ok ") {
        Some(done) => {
            println!("{done}");
            0
        }
        None => {
            eprintln!(
                "palisade-e2e: {}",
                answer.trim_end().trim_start_matches("error ")
            );
            1
        }
    }
}

/// What `serve` does with one request line (`restart TARGET` or `pause TARGET SECONDS`): the
/// line to print.
fn act(cluster: &Running, request: &str) -> Result<String, String> {
    let words: Vec<&str> = request.split_whitespace().collect();
    let (verb, target, seconds) = match words.as_slice() {
        ["restart", target] => ("restart", *target, 0),
        ["pause", target, seconds] => (
            "pause",
            *target,
            seconds
                .parse::<u64>()
                .map_err(|e| format!("{seconds}: {e}"))?,
        ),
        _ => return Err(format!("not a request: {request}")),
    };
    let target: Target = target.parse()?;
    let how_long = Duration::from_secs(seconds);
    let start = Instant::now();
    let done = match (cluster, &target) {
        (Running::Real(c), _) if verb == "restart" => c.restart(&target),
        (Running::Real(c), _) => c.pause(&target, how_long),
        (Running::Netns { cp, .. }, Target::ControlPlane(component)) if verb == "restart" => {
            cp.restart(*component)
        }
        (Running::Netns { cp, .. }, Target::ControlPlane(component)) => {
            cp.pause(*component, how_long)
        }
        (Running::Netns { .. }, Target::Node { .. }) => {
            return Err(format!(
                "{target}: network-namespace nodes run no kubelet or containerd (palisade-e2e up --real-nodes)"
            ));
        }
    };
    done.map_err(|e| e.to_string())?;
    Ok(match verb {
        "restart" => format!(
            "{target} restarted, answering again after {:.1} s",
            start.elapsed().as_secs_f64()
        ),
        _ => format!(
            "{target} paused for {seconds} s, everything answering again after {:.1} s",
            start.elapsed().as_secs_f64()
        ),
    })
}

/// Answers requests on the control socket until `stop` is set (and the socket is poked).
fn serve_requests(
    cluster: &Running,
    listener: &std::os::unix::net::UnixListener,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::io::{BufRead, Write};
    for stream in listener.incoming() {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        let mut line = String::new();
        if std::io::BufReader::new(&stream)
            .read_line(&mut line)
            .is_err()
        {
            continue;
        }
        println!("request: {}", line.trim_end());
        let answer = match act(cluster, line.trim()) {
            Ok(done) => format!("ok {done}"),
            Err(e) => format!("error {}", e.replace('\n', " ")),
        };
        println!("{answer}");
        let _ = writeln!(stream, "{answer}");
    }
}

/// The `--import FILE` arguments, each an existing file, made absolute (serve runs elsewhere).
fn imports(args: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let value = if arg == "--import" {
            rest.next()
                .ok_or("--import needs a docker-archive file (FILE.tar)")?
                .clone()
        } else if let Some(v) = arg.strip_prefix("--import=") {
            v.to_string()
        } else {
            continue;
        };
        let path = std::path::absolute(&value).map_err(|e| format!("--import {value}: {e}"))?;
        if !path.is_file() {
            return Err(format!("--import {value}: no such file"));
        }
        files.push(path);
    }
    if !files.is_empty() && !args.iter().any(|a| a == "--real-nodes") {
        return Err(
            "--import works with --real-nodes (network-namespace nodes run no images)".into(),
        );
    }
    Ok(files)
}

fn up(real_nodes: bool, imports: &[PathBuf]) -> i32 {
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
        .args(real_nodes.then_some("--real-nodes"))
        .args(
            imports
                .iter()
                .flat_map(|f| [std::ffi::OsStr::new("--import"), f.as_os_str()]),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log);
    // SAFETY: pre_exec is unsafe because its closure runs in the child between fork and exec,
    // where only async-signal-safe calls are allowed: setsid is one, and nothing is allocated.
    // It detaches the child from this terminal's session.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    if let Err(e) = cmd.spawn() {
        eprintln!("palisade-e2e: starting the cluster: {e}");
        return 1;
    }
    let start = Instant::now();
    let limit = Duration::from_secs(if real_nodes { 300 } else { 120 });
    let mut shown = 0;
    while start.elapsed() < limit {
        // serve's progress, as it comes
        if let Ok(log) = std::fs::read_to_string(dir.join("serve.log")) {
            for line in log.lines().skip(shown) {
                println!("  {line}");
                shown += 1;
            }
        }
        if let Ok(text) = std::fs::read_to_string(&state) {
            println!("{text}");
            return 0;
        }
        if std::fs::read_to_string(dir.join("serve.log"))
            .is_ok_and(|l| l.contains("palisade-e2e: "))
        {
            eprintln!("palisade-e2e: the cluster did not come up; see above");
            return 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!(
        "palisade-e2e: the cluster did not come up within {} s; see {}",
        limit.as_secs(),
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
    // Asks the serve process recorded in the state file to stop.
    if signal(pid, Signal::SIGTERM) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) && alive(pid) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let _ = std::fs::remove_file(&state);
    println!("local cluster stopped");
    0
}

/// Blocks SIGTERM and SIGINT on this thread (and the threads it starts later), for a thread that
/// takes them with sigwait; returns that set. Children unblock them (see `spawn_tied`).
fn block_termination_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    if let Err(e) = set.thread_block() {
        eprintln!("palisade-e2e: blocking SIGTERM and SIGINT: {e}");
    }
    set
}

fn serve(real_nodes: bool, imports: &[PathBuf]) -> i32 {
    // Signals are taken by sigwait below, so block them before any thread starts.
    let set = block_termination_signals();
    let start = Instant::now();
    let mut progress = |step: &str| println!("[{:>3}s] {step}", start.elapsed().as_secs());
    let (cluster, text) = if real_nodes {
        match start_real(&mut progress, imports) {
            Ok(x) => x,
            Err(e) => {
                println!("palisade-e2e: {e}");
                return 1;
            }
        }
    } else {
        match start_netns() {
            Ok(x) => x,
            Err(e) => {
                println!("palisade-e2e: {e}");
                return 1;
            }
        }
    };
    let socket = control_socket();
    let _ = std::fs::remove_file(&socket);
    let listener = match std::os::unix::net::UnixListener::bind(&socket) {
        Ok(l) => l,
        Err(e) => {
            println!("palisade-e2e: listening on {}: {e}", socket.display());
            return 1;
        }
    };
    let state = state_dir().join("state");
    if let Err(e) = std::fs::write(&state, &text) {
        eprintln!("palisade-e2e: writing {}: {e}", state.display());
        return 1;
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| serve_requests(&cluster, &listener, &stop));
        // Until one of the blocked signals comes.
        let _ = set.wait();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the request thread, which then sees `stop`.
        let _ = std::os::unix::net::UnixStream::connect(&socket);
    });
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(&state);
    drop(cluster);
    0
}

/// A running cluster of either kind, held until `down`; dropping it stops everything.
enum Running {
    /// Fields drop in order: the network namespaces, then the control plane.
    Netns {
        _network: Network,
        cp: ControlPlane,
    },
    Real(RealCluster),
}

fn start_netns() -> Result<(Running, String), palisade_e2e::Error> {
    let cp = ControlPlane::start()?;
    let net = Network::create(&NODES)?;
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
    text.push_str("pods get namespaces named palisade-<network>-pod-<namespace>-<name>\nrestart or pause etcd or kube-apiserver: palisade-e2e restart kube-apiserver, palisade-e2e pause etcd --seconds 5\nstop with: palisade-e2e down");
    Ok((Running::Netns { _network: net, cp }, text))
}

fn start_real(
    progress: &mut dyn FnMut(&str),
    imports: &[PathBuf],
) -> Result<(Running, String), palisade_e2e::Error> {
    let cluster = RealCluster::start(&real_nodes::NODES, progress)?;
    let image = real_nodes::default_image_archive();
    let image_line = if image.is_file() {
        progress(&format!("importing {} into every node", image.display()));
        cluster.import_image(&image)?;
        format!("image: {} imported into every node\n", image.display())
    } else {
        format!(
            "image: none imported ({} is missing: run ./e2e/image.sh)\n",
            image.display()
        )
    };
    let mut image_line = image_line;
    for file in imports {
        progress(&format!("importing {} into every node", file.display()));
        cluster.import_image(file)?;
        image_line.push_str(&format!(
            "image: {} imported into every node\n",
            file.display()
        ));
    }
    let mut text = format!(
        "pid: {}\nkubeconfig: {}\nserver: {}\n{image_line}real nodes (kubelet, containerd, kube-proxy; `nsenter --net=/run/netns/NETNS sh` to look around):\n",
        std::process::id(),
        cluster.cp.kubeconfig.display(),
        cluster.cp.server
    );
    for n in cluster.nodes() {
        text.push_str(&format!(
            "  {}: netns {}, address {}, pods {}, containerd {}\n",
            n.name,
            n.netns,
            n.address,
            n.pod_cidr,
            n.containerd_socket().display()
        ));
    }
    text.push_str("install Palisade: helm install palisade charts/palisade -n palisade-system --create-namespace --kubeconfig <kubeconfig>\nrestart or pause a component: palisade-e2e restart node-1/kubelet, palisade-e2e pause etcd --seconds 5\nstop with: palisade-e2e down");
    Ok((Running::Real(cluster), text))
}

/// The demo, with the image `e2e/image.sh` built and the CLI built next to this binary.
/// Ctrl-C at any moment leaves nothing behind: while `--keep` waits it ends the wait and the
/// demo tears down as usual; at any other moment everything the demo made is removed at once.
fn demo(keep: bool) -> i32 {
    use std::sync::atomic::{AtomicBool, Ordering};
    static WAITING: AtomicBool = AtomicBool::new(false);
    static INTERRUPTED: AtomicBool = AtomicBool::new(false);
    static ABANDONING: AtomicBool = AtomicBool::new(false);
    // Before any other thread exists: only the thread below takes these signals.
    let set = block_termination_signals();
    std::thread::spawn(move || {
        loop {
            // Until one of the signals blocked above comes.
            let _ = set.wait();
            if WAITING.load(Ordering::SeqCst) {
                INTERRUPTED.store(true, Ordering::SeqCst);
                continue;
            }
            ABANDONING.store(true, Ordering::SeqCst);
            eprintln!("\ninterrupted: removing the nodes, namespaces and rules the demo made");
            real_nodes::abandon_all();
            std::process::exit(130);
        }
    });
    let dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from))
        .unwrap_or_default();
    let setup = match palisade_e2e::demo::Setup::find(&dir) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("palisade-e2e demo: {e}");
            return 2;
        }
    };
    let wait = || {
        WAITING.store(true, Ordering::SeqCst);
        let done = INTERRUPTED.load(Ordering::SeqCst);
        if done {
            WAITING.store(false, Ordering::SeqCst);
        }
        done
    };
    let mut stdout = std::io::stdout();
    let keep: Option<&dyn Fn() -> bool> = if keep { Some(&wait) } else { None };
    let result = palisade_e2e::demo::run(&setup, keep, &mut stdout);
    // Interrupted: the cluster is being removed under the demo, whose errors say nothing more;
    // the signal thread ends the process.
    while ABANDONING.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    match result {
        Ok(outcome) if outcome.failures.is_empty() => 0,
        Ok(_) => 1,
        Err(e) => {
            eprintln!("palisade-e2e demo: {e}");
            1
        }
    }
}

/// `soak [--minutes N] [--pods N]`: two real nodes with the chart, the tutorial world and its policies,
/// then the soak and its end checks (leak check included); prints their figures and what
/// broke. 0: it held, 1: it did not, 2: it could not
/// run.
fn soak(args: &[String]) -> i32 {
    if args.iter().skip(2).any(|a| a == "--help" || a == "-h") {
        usage();
        return 0;
    }
    let mut rest = args.iter().skip(2);
    while let Some(arg) = rest.next() {
        if !matches!(arg.as_str(), "--minutes" | "--pods") {
            eprintln!("palisade-e2e soak: unknown argument {arg:?} (--minutes N, --pods N)");
            return 2;
        }
        rest.next();
    }
    // Before any other thread exists: only the thread below takes these signals. Ctrl-C
    // removes the nodes and everything the soak made, then ends the process.
    let set = block_termination_signals();
    std::thread::spawn(move || {
        let _ = set.wait();
        eprintln!("\ninterrupted: removing the nodes, namespaces and rules the soak made");
        real_nodes::abandon_all();
        std::process::exit(130);
    });
    let minutes: u64 = match args.iter().position(|a| a == "--minutes") {
        None => 10,
        Some(i) => match args.get(i + 1).and_then(|m| m.parse().ok()) {
            Some(m) => m,
            None => {
                eprintln!("palisade-e2e soak: --minutes needs a whole number");
                return 2;
            }
        },
    };
    // Both numbers are read before the nodes start, so a typo costs no cluster.
    let pods: usize = match args.iter().position(|a| a == "--pods") {
        None => 0,
        Some(i) => match args.get(i + 1).and_then(|m| m.parse().ok()) {
            Some(p) => p,
            None => {
                eprintln!("palisade-e2e soak: --pods needs a whole number");
                return 2;
            }
        },
    };
    let Some(cluster) = real_nodes::cluster_for_tests() else {
        return 2;
    };
    let world = match palisade_e2e::soak::prepare(&cluster) {
        Ok(world) => world,
        Err(e) => {
            eprintln!("palisade-e2e soak: {e}");
            return 2;
        }
    };
    let options = palisade_e2e::soak::Options {
        filler_pods: pods,
        ..palisade_e2e::soak::Options::new(Duration::from_secs(minutes * 60))
    };
    println!(
        "soak for {minutes} min, seed {} (PALISADE_SOAK_SEED={} replays it)",
        options.seed, options.seed
    );
    let report = match palisade_e2e::soak::run(&cluster, &world, &options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("palisade-e2e soak: {e}");
            return 2;
        }
    };
    println!("{}", report.summary());
    let ending = match palisade_e2e::soak::end_checks(&cluster, &world) {
        Ok(ending) => ending,
        Err(e) => {
            eprintln!("palisade-e2e soak: the end checks: {e}");
            return 2;
        }
    };
    println!("{}", ending.summary());
    let broken: Vec<String> = report
        .violations(&options)
        .into_iter()
        .chain(ending.violations())
        .collect();
    for line in &broken {
        println!("BROKEN: {line}");
    }
    i32::from(!broken.is_empty())
}
