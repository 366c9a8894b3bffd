use clap::Parser;
use palisade_webhook::run::{Args, run};

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rustls=error".into());
    if args.log_format == "text" {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    }
    if let Err(e) = run(args).await {
        tracing::error!(error = %e, "palisade-webhook stopped");
        std::process::exit(1);
    }
}
