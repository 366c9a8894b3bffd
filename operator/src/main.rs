use std::sync::Arc;

use clap::Parser;
use palisade_operator::reconcile::{Context, run};

#[derive(Debug, Parser)]
#[command(
    name = "palisade-operator",
    version,
    about = "Keeps NetworkBaseline default-deny policies in opted-in namespaces"
)]
struct Args {
    /// Palisade's own namespace, never given a baseline.
    #[arg(long, env = "POD_NAMESPACE", default_value = "palisade-system")]
    namespace: String,
    /// This replica's name, for Events.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Log format: text or json.
    #[arg(long, default_value = "json")]
    log_format: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if args.log_format == "text" {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    }
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot reach the Kubernetes API");
            std::process::exit(1);
        }
    };
    let ctx = Arc::new(Context::new(client, args.namespace, args.pod_name));
    tracing::info!("reconciling NetworkBaselines");
    run(ctx, async {
        // Kubernetes stops pods with SIGTERM; Ctrl-C for people running it by hand.
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        tracing::info!("shutting down");
    })
    .await;
}
