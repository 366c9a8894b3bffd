use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use palisade_operator::leader::{Elector, LeaseConfig};
use palisade_operator::metrics::Metrics;
use palisade_operator::reconcile::{Context, run};
use palisade_runtime::process;

#[derive(Debug, Parser)]
#[command(
    name = "palisade-operator",
    version,
    about = "Keeps NetworkBaseline default-deny policies in opted-in namespaces"
)]
struct Args {
    /// Palisade's own namespace: never given a baseline; holds the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "palisade-system")]
    namespace: String,
    /// This replica's name, for Events and the leader Lease (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Plain HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, value_parser = palisade_runtime::process::parse_listen_address, default_value = "0.0.0.0:8080")]
    admin_listen: SocketAddr,
    /// The Lease that elects the one replica that writes.
    #[arg(long, default_value = "palisade-operator")]
    lease_name: String,
    /// Seconds a leader's Lease lasts without renewal; a standby takes over after that.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// The webhook's Service in the same namespace: its availability is reported on every
    /// NetworkBaseline (condition WebhookAvailable, Events) and as a metric. Empty: none.
    #[arg(long, default_value = "")]
    webhook_service: String,
    /// Log format: text or json.
    #[arg(long, default_value = "json")]
    log_format: String,
}

fn identity(pod_name: Option<String>) -> String {
    pod_name
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("palisade-operator-{}", std::process::id()))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    process::init_logging(&args.log_format, "info");
    let client = process::client_or_exit().await;
    let identity = identity(args.pod_name);
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let stop = process::Stop::on_signal();
    let admin = process::spawn_admin(
        args.admin_listen,
        ready.clone(),
        "the Kubernetes API has not answered yet",
        {
            let metrics = metrics.clone();
            Arc::new(move || metrics.render())
        },
        &stop,
    );

    let lease_duration = Duration::from_secs(args.lease_duration.max(2));
    let mut elector = Elector::new(
        client.clone(),
        LeaseConfig {
            namespace: args.namespace.clone(),
            name: args.lease_name,
            identity: identity.clone(),
            duration: lease_duration,
            retry: lease_duration / 3,
        },
    );
    tracing::info!(%identity, "waiting to lead");
    // Ready means "alive and talking to the API": a standby is ready, so rollouts proceed.
    let leading = tokio::select! {
        _ = elector.acquire(|answered| ready.store(answered, Ordering::SeqCst)) => true,
        _ = stop.stopped() => false,
    };
    if leading {
        metrics.set_leader(true);
        // Helm never upgrades CRDs: the leader brings them to its own version first.
        if let Err(e) = palisade_operator::crd_upgrade::bring_up_to_date(&client).await {
            tracing::error!(error = %e, "Palisade's CRDs");
            metrics.set_leader(false);
            elector.release().await;
            std::process::exit(1);
        }
        tracing::info!(%identity, "leading: reconciling NetworkBaselines");
        let webhook = (!args.webhook_service.is_empty()).then(|| {
            let changed = Arc::new(tokio::sync::Notify::new());
            let health = palisade_operator::webhook_health::WebhookHealth::watch(
                &client,
                &args.namespace,
                &args.webhook_service,
                &changed,
            );
            (health, changed)
        });
        let ctx = Arc::new(Context::new(
            client,
            args.namespace,
            Some(identity),
            metrics.clone(),
            webhook,
        ));
        let (lost_tx, lost_rx) = tokio::sync::watch::channel(false);
        let controllers = run(ctx, {
            let (stopped, mut lost) = (stop.stopped(), lost_rx);
            async move {
                tokio::select! {
                    _ = stopped => {}
                    _ = lost.wait_for(|l| *l) => {}
                }
            }
        });
        tokio::pin!(controllers);
        tokio::select! {
            _ = &mut controllers => {}
            _ = elector.hold() => {
                // Another replica may be writing now: stop at once, and let Kubernetes
                // restart this one as a standby.
                let _ = lost_tx.send(true);
                metrics.set_leader(false);
                controllers.await;
                std::process::exit(1);
            }
        }
        elector.release().await;
    }
    process::join_admin(admin).await;
}
