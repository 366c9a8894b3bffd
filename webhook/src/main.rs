use clap::Parser;
use palisade_webhook::run::{Args, run};
use palisade_webhook::selftest::{self, SelftestArgs};

#[tokio::main]
async fn main() {
    // `selftest` asks a running webhook for a review (the chart's helm test); anything else
    // runs the webhook.
    if std::env::args().nth(1).as_deref() == Some("selftest") {
        let args = SelftestArgs::parse_from(std::env::args().skip(1));
        match selftest::run(&args) {
            Ok(verdict) => println!("{verdict}"),
            Err(e) => {
                eprintln!("palisade-webhook selftest: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let args = Args::parse();
    palisade_runtime::process::init_logging(&args.log_format, "info,rustls=error");
    if let Err(e) = run(args).await {
        tracing::error!(error = %e, "palisade-webhook stopped");
        std::process::exit(1);
    }
}
