use clap::Parser;
use palisade_webhook::run::{Args, run};

#[tokio::main]
async fn main() {
    let args = Args::parse();
    palisade_policy::process::init_logging(&args.log_format, "info,rustls=error");
    if let Err(e) = run(args).await {
        tracing::error!(error = %e, "palisade-webhook stopped");
        std::process::exit(1);
    }
}
