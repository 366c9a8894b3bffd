//! What every Palisade process shares (webhook, operator, enforcer): structured logs, the
//! shutdown signal, and the plain-HTTP admin port with `/healthz`, `/readyz` and `/metrics`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// Logs to stderr, as JSON (`json`, the default in clusters) or text; `RUST_LOG` overrides
/// `default_filter`.
pub fn init_logging(format: &str, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "text" {
        builder.init();
    } else {
        builder.json().init();
    }
}

/// Resolves on SIGTERM (how Kubernetes stops a pod) or Ctrl-C (a person running it by hand).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// Renders the process's metrics in the OpenMetrics text format.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// The admin routes: `/healthz` (the process serves), `/readyz` (200 once `ready` is set, 503
/// with `not_ready` before), `/metrics`.
pub fn admin_router(
    ready: Arc<AtomicBool>,
    not_ready: &'static str,
    metrics: RenderMetrics,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::SeqCst);
                async move {
                    if ready {
                        (StatusCode::OK, "ok\n".to_string())
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, format!("{not_ready}\n"))
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = metrics();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response()
                }
            }),
        )
}

/// Serves `router` on `addr` until `shutdown` resolves.
pub async fn serve_admin(
    addr: SocketAddr,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Encodes a prometheus-client registry as OpenMetrics text.
pub fn encode(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// The process's stop request: set on SIGTERM or Ctrl-C; any number of tasks can wait for it.
#[derive(Clone)]
pub struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    /// Starts listening for SIGTERM and Ctrl-C.
    pub fn on_signal() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = tx.send(true);
        });
        Self(rx)
    }

    /// Resolves once the process is asked to stop.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// Serves the admin routes on `addr` in the background until `stop`.
pub fn spawn_admin(
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
    not_ready: &'static str,
    metrics: RenderMetrics,
    stop: &Stop,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(serve_admin(
        addr,
        admin_router(ready, not_ready, metrics),
        stop.stopped(),
    ))
}

/// A client for the cluster kubectl would use (`KUBECONFIG`, or in-cluster); exits the process
/// with the reason when there is none.
pub async fn client_or_exit() -> kube::Client {
    match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot reach the Kubernetes API");
            std::process::exit(1);
        }
    }
}

/// Waits for the admin server to finish; exits non-zero when it failed (e.g. its port was
/// taken).
pub async fn join_admin(admin: tokio::task::JoinHandle<std::io::Result<()>>) {
    match admin.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "admin port");
            std::process::exit(1);
        }
        Err(e) => tracing::error!(error = %e, "admin server task"),
    }
}

/// Publishes an Event about `reference` (events.k8s.io keeps at most 1 kB of note: a longer
/// one is cut with `...`). A failure is logged, never fatal: an Event is a courtesy.
pub async fn publish_event(
    recorder: &kube::runtime::events::Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: kube::runtime::events::EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let note = if note.len() > 1000 {
        let mut cut = 997;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &note[..cut])
    } else {
        note
    };
    let ev = kube::runtime::events::Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, reference).await {
        tracing::warn!(error = %e, reason, "cannot publish an Event");
    }
}

/// An address to listen on, `IP:PORT`: `10.0.0.5:9102`, `[fd00::5]:9102`, and also an IPv6
/// address without brackets, `fd00::5:9102`, which is what a manifest's `$(HOST_IP):9102` gives
/// on a node whose own address is IPv6: the port is what follows the last colon.
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let bad = || {
        format!(
            "`{text}` is not an address to listen on: IP:PORT, e.g. 0.0.0.0:9102, [::]:9102, \
             10.0.0.5:9102 or fd00::5:9102"
        )
    };
    let (ip, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let ip: Ipv6Addr = ip.parse().map_err(|_| bad())?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    Ok(SocketAddr::new(IpAddr::V6(ip), port))
}

#[cfg(test)]
mod listen_address_tests {
    use super::parse_listen_address;

    #[test]
    fn every_spelling_of_an_address_and_port() {
        for (text, want) in [
            ("0.0.0.0:9102", "0.0.0.0:9102"),
            ("10.0.0.5:9102", "10.0.0.5:9102"),
            ("[::]:9102", "[::]:9102"),
            ("[fd00::5]:9102", "[fd00::5]:9102"),
            ("fd00::5:9102", "[fd00::5]:9102"),
            ("2001:db8::1:8080", "[2001:db8::1]:8080"),
        ] {
            assert_eq!(
                parse_listen_address(text).map(|a| a.to_string()),
                Ok(want.to_string()),
                "{text}"
            );
        }
    }

    #[test]
    fn no_port_or_no_address_is_refused_with_examples() {
        for text in [
            "fd00::5",
            "10.0.0.5",
            "::9102",
            "node:9102",
            "10.0.0.5:99999",
            "",
        ] {
            let err = parse_listen_address(text).expect_err(text);
            assert!(
                err.starts_with(&format!("`{text}` is not an address to listen on")),
                "{err}"
            );
            assert!(err.contains("fd00::5:9102"), "{err}");
        }
    }
}
