use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Parser, Subcommand};
use palisade_enforcer::CompileOptions;
use palisade_enforcer::backend::{self, BackendChoice};
use palisade_enforcer::compile::DenyAction;
use palisade_enforcer::event_loop::run;
use palisade_enforcer::first_packet::Options as FirstPacketOptions;
use palisade_enforcer::lifecycle::OwnDaemonSet;
use palisade_enforcer::metrics::Metrics;
use palisade_enforcer::mode::Mode;
use palisade_enforcer::sync::Settings;
use palisade_runtime::process;

#[global_allocator]
static HEAP: palisade_enforcer::heap::Counting = palisade_enforcer::heap::Counting;

#[derive(Debug, Parser)]
#[command(
    name = "palisade-enforcer",
    version,
    about = "Programs iptables chains and ipsets on this node from the cluster's NetworkPolicies"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Watch the cluster and keep this node's rules right (the default).
    Run,
    /// Remove every Palisade chain, jump and ipset from this node, then exit.
    Cleanup,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// This node's name (the downward API's spec.nodeName).
    #[arg(long, env = "NODE_NAME", global = true)]
    node_name: Option<String>,
    /// Where the node's CNI configuration lives.
    #[arg(long, default_value = palisade_enforcer::cni::DEFAULT_DIR, global = true)]
    cni_dir: PathBuf,
    /// First-packet isolation: install the `palisade-cni` plugin as the last plugin of the
    /// node's CNI configuration, so a new pod gets its network only once its rules are in the
    /// kernel (true or false; false removes a plugin installed before).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, global = true)]
    first_packet: bool,
    /// The socket the plugin asks the enforcer on (the same path on the node).
    #[arg(long, default_value = palisade_cni::protocol::DEFAULT_SOCKET, global = true)]
    first_packet_socket: PathBuf,
    /// Seconds the plugin waits for the enforcer before it fails the pod's start (closed).
    #[arg(long, default_value_t = palisade_cni::protocol::DEFAULT_TIMEOUT_SECONDS, global = true)]
    first_packet_timeout_seconds: u64,
    /// The node's CNI bin directory, where the plugin is installed.
    #[arg(long, default_value = "/opt/cni/bin", global = true)]
    cni_bin_dir: PathBuf,
    /// The plugin binary to install (default: palisade-cni beside this binary).
    #[arg(long, global = true)]
    cni_plugin: Option<PathBuf>,
    /// auto: enforce only where the CNI does not; enforce: always; off: never (report only).
    #[arg(long, value_enum, default_value = "auto", global = true)]
    mode: Mode,
    /// Plain HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, value_parser = palisade_runtime::process::parse_listen_address, default_value = "0.0.0.0:9102", global = true)]
    admin_listen: SocketAddr,
    /// Seconds between checks of the node's rules against the desired ones (repairs rules
    /// someone else changed).
    #[arg(long, default_value_t = 10, global = true)]
    resync_seconds: u64,
    /// At most one sync per this many milliseconds: a change after a quiet moment is synced at
    /// once, the changes that follow it wait for the rest of the period, so a burst costs two
    /// syncs.
    #[arg(long, default_value_t = 100, global = true)]
    debounce_ms: u64,
    /// What happens to a denied connection: drop (the client waits for its timeout) or reject
    /// (a TCP reset, ICMP admin-prohibited for other protocols, rate-limited: the client fails
    /// at once).
    #[arg(long, value_enum, default_value = "drop", global = true)]
    deny_action: DenyAction,
    /// The iptables backend for Palisade's rules: auto (the one holding the node's other rules,
    /// KUBE-, CNI-, …; nft when there are none), nft or legacy.
    #[arg(long, value_enum, default_value = "auto", global = true)]
    iptables_backend: BackendChoice,
    /// NFLOG group for audit logs and denial logs (the enforcer reads it itself with
    /// --report-denials; no other process may bind it then).
    #[arg(long, default_value_t = 100, global = true)]
    nflog_group: u16,
    /// Report denied connection attempts: the first packet of each (rate-limited in the
    /// kernel) is logged to the NFLOG group, read back by the enforcer and reported as a JSON
    /// log line, the palisade_enforcer_denied_total counter and an Event on the denied pod
    /// (true or false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, global = true)]
    report_denials: bool,
    /// Denied connection attempts logged a minute per pod and direction (node-wide for
    /// ClusterNetworkPolicy Deny rules), in the kernel.
    #[arg(long, default_value_t = 60, global = true)]
    denial_logs_per_minute: u32,
    /// Write Kubernetes Events for denials (true or false; logs and metrics either way).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, global = true)]
    denial_events: bool,
    /// New denial Events a minute from this node, at most (repeats within a minute only
    /// raise an Event's count).
    #[arg(long, default_value_t = 30, global = true)]
    denial_events_per_minute: usize,
    /// Denial records explained a second, at most; the rest are counted as lost (sampled).
    #[arg(long, default_value_t = 100, global = true)]
    denial_records_per_second: u32,
    /// The DaemonSet this enforcer runs in: when it stops and the DaemonSet is gone (the chart
    /// was uninstalled), it removes its rules; otherwise the rules stay in force.
    #[arg(long, global = true)]
    daemonset: Option<String>,
    /// The namespace of that DaemonSet.
    #[arg(
        long,
        env = "POD_NAMESPACE",
        default_value = "palisade-system",
        global = true
    )]
    namespace: String,
    /// After rules change, delete the conntrack entries of the connections policy now denies,
    /// so a tightened policy cuts live connections too (true or false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, global = true)]
    cut_denied_connections: bool,
    /// Log format: text or json.
    #[arg(long, default_value = "json", global = true)]
    log_format: String,
}

/// The enforcer caches every Pod of the cluster and rebuilds a snapshot per sync; glibc's
/// default of one arena per thread (up to 8 per core) keeps the freed snapshots as resident
/// memory. Two arenas, and returning free memory after each sync (see event_loop), keep it small.
fn limit_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() {
    limit_allocator_arenas();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run_main()),
        Err(e) => {
            eprintln!("palisade-enforcer: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}

/// `palisade-enforcer cleanup`: Palisade's chains out of both backends (where they work), then
/// the sets.
fn cleanup(
    choice: BackendChoice,
) -> Result<palisade_enforcer::apply::Applied, Box<dyn std::error::Error + Send + Sync>> {
    let detection = backend::detect(choice)?;
    let removed_other = detection.other_works && backend::leave(detection.other());
    let mut applied =
        palisade_enforcer::apply::cleanup_families(detection.backend, &detection.families)?;
    applied.chains_written |= removed_other;
    Ok(applied)
}

async fn run_main() {
    let args = Args::parse();
    process::init_logging(&args.run.log_format, "info");
    if let Some(Command::Cleanup) = args.command {
        let choice = args.run.iptables_backend;
        match tokio::task::spawn_blocking(move || cleanup(choice)).await {
            Ok(Ok(applied)) => {
                tracing::info!(
                    removed = applied.wrote(),
                    "Palisade's rules and sets removed"
                );
                return;
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cleanup failed"),
            Err(e) => tracing::error!(error = %e, "cleanup task"),
        }
        std::process::exit(1);
    }
    let a = args.run;
    let Some(node) = a.node_name.filter(|n| !n.is_empty()) else {
        tracing::error!("no node name: set --node-name or NODE_NAME (downward API spec.nodeName)");
        std::process::exit(2);
    };
    let client = process::client_or_exit().await;
    let stop = process::Stop::on_signal();
    let first_packet = FirstPacketOptions {
        enabled: a.first_packet,
        socket: a.first_packet_socket,
        conf_dir: a.cni_dir.clone(),
        bin_dir: a.cni_bin_dir,
        plugin: a.cni_plugin.unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|e| {
                    e.parent()
                        .map(|d| d.join(palisade_cni::protocol::PLUGIN_TYPE))
                })
                .unwrap_or_else(|| PathBuf::from("/usr/local/bin/palisade-cni"))
        }),
        timeout: Duration::from_secs(a.first_packet_timeout_seconds.clamp(1, 300)),
        node: node.clone(),
        mode: a.mode,
        gate: Default::default(),
    };
    let settings = Settings {
        first_packet: first_packet.start(stop.stopped()),
        node,
        cni_dir: a.cni_dir,
        mode: a.mode,
        iptables_backend: a.iptables_backend,
        resync: Duration::from_secs(a.resync_seconds.max(1)),
        debounce: Duration::from_millis(a.debounce_ms),
        options: CompileOptions {
            nflog_group: a.nflog_group,
            deny_action: a.deny_action,
            log_denials: a.report_denials,
            deny_logs_per_minute: a.denial_logs_per_minute.max(1),
            deny_mid_stream_tcp: a.cut_denied_connections,
            ..CompileOptions::default()
        },
        cut_denied_connections: a.cut_denied_connections,
    };
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let admin = process::spawn_admin(
        a.admin_listen,
        ready.clone(),
        "the first sync has not finished",
        {
            let metrics = metrics.clone();
            Arc::new(move || metrics.render())
        },
        &stop,
    );
    tracing::info!(
        node = %settings.node,
        mode = settings.mode.as_str(),
        deny_action = settings.options.deny_action.as_str(),
        iptables_backend = settings.iptables_backend.as_str(),
        "starting"
    );
    let denials = a.report_denials.then(|| {
        let options = palisade_enforcer::denials::Options {
            node: settings.node.clone(),
            nflog_group: a.nflog_group,
            events: a.denial_events,
            max_events_per_minute: a.denial_events_per_minute,
            records_per_second: a.denial_records_per_second.max(1),
        };
        let events = a.denial_events.then(|| client.clone());
        let addresses = palisade_enforcer::conntrack::node_addresses();
        match palisade_enforcer::denials::start(
            events,
            options,
            metrics.clone(),
            addresses,
            stop.stopped(),
        ) {
            Ok(task) => Some(task),
            Err(e) => {
                tracing::warn!(error = %e, group = a.nflog_group, "cannot read the NFLOG group: denials are not reported");
                None
            }
        }
    });
    let own = a
        .daemonset
        .as_deref()
        .map(|name| OwnDaemonSet::watch(&client, &a.namespace, name));
    let detection = run(client.clone(), settings, metrics, ready, stop.stopped()).await;
    // Uninstalled: new pods must not wait for an enforcer that is gone.
    if let Some(own) = &own
        && own.uninstalled().await == Some(true)
    {
        first_packet.uninstall().await;
    }
    if let (Some(own), Some(detection)) = (own, detection) {
        own.clean_up_if_uninstalled(detection).await;
    }
    if let Some(Some(task)) = denials {
        let _ = task.await;
    }
    process::join_admin(admin).await;
}
