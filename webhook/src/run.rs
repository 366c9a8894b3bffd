//! The webhook process: HTTPS on the webhook port, plain HTTP admin port, caches, certificate
//! reload, graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;
use clap::Parser;
use palisade_policy::checks::{self, CheckConfig, CheckId, Mode};
use palisade_runtime::process;
use tokio::sync::Notify;

use crate::caches::Caches;
use crate::certs::CertArgs;
use crate::certs::live::Keeper;
use crate::config::WebhookConfig;
use crate::metrics::Metrics;
use crate::review::{ClusterState, Pending};
use crate::server::{AppState, Confirm, router};
use crate::settle::{self, Publish, Settle};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{EventType, Recorder, Reporter};

#[derive(Debug, Parser)]
#[command(
    name = "palisade-webhook",
    version,
    about = "Refuses ineffective NetworkPolicies at admission"
)]
pub struct Args {
    /// HTTPS address for AdmissionReviews.
    #[arg(long, value_parser = palisade_runtime::process::parse_listen_address, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Plain HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, value_parser = palisade_runtime::process::parse_listen_address, default_value = "0.0.0.0:8080")]
    pub admin_listen: SocketAddr,
    /// Serving certificate (PEM, e.g. cert-manager's); reloaded when it changes. Without it,
    /// --certificate-secret.
    #[arg(
        long,
        required_unless_present = "certificate_secret",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Serving key (PEM); reloaded when it changes.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub certs: CertArgs,
    /// A check's mode, `CHECK=deny|warn|off`; repeatable.
    #[arg(long = "check-mode", value_parser = checks::parse_setting)]
    pub check_modes: Vec<(CheckId, Mode)>,
    /// `unmatched-selector` for objects managed by Helm, Argo CD or Flux.
    #[arg(long, default_value = "warn")]
    pub gitops_unmatched_selector: Mode,
    /// The cluster's CNI (e.g. flannel) where it cannot be detected.
    #[arg(long)]
    pub cni: Option<String>,
    /// Seconds a namespace must be quiet after a NetworkPolicy is stored there before
    /// `one-sided` judges it (the rest of its `kubectl apply` arrives meanwhile); a policy
    /// still one-sided then gets a Warning Event.
    #[arg(long, default_value = "5")]
    pub settle_seconds: u64,
    /// Log format: text or json.
    #[arg(long, default_value = "json")]
    pub log_format: String,
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Ready once the caches synced and the served certificate is trusted by the webhook
/// configuration (always, with certificate files).
struct Readiness {
    caches: AtomicBool,
    certificate: Arc<AtomicBool>,
    all: Arc<AtomicBool>,
}

impl Readiness {
    fn update(&self) {
        let all = self.caches.load(Ordering::SeqCst) && self.certificate.load(Ordering::SeqCst);
        self.all.store(all, Ordering::SeqCst);
    }
}

pub async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // One crypto provider for the process, installed before any TLS config is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("connecting to the Kubernetes API: {e}"))?;
    let metrics = Arc::new(Metrics::default());
    let stop = process::Stop::on_signal();
    let readiness = Arc::new(Readiness {
        caches: AtomicBool::new(false),
        certificate: Arc::new(AtomicBool::new(true)),
        all: Arc::new(AtomicBool::new(false)),
    });
    // The admin port first: /healthz answers (and /readyz says why not) while the first
    // certificate is being provisioned.
    let admin = {
        let metrics = metrics.clone();
        process::spawn_admin(
            args.admin_listen,
            readiness.all.clone(),
            "caches not synced yet, or the served certificate not trusted by the webhook configuration yet",
            Arc::new(move || metrics.render()),
            &stop,
        )
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = RustlsConfig::from_pem_file(cert, key).await.map_err(|e| {
                format!(
                    "reading the serving certificate {} / {}: {e}",
                    cert.display(),
                    key.display()
                )
            })?;
            set_expiry_from_file(&metrics, cert);
            spawn_file_reload(tls.clone(), cert.clone(), key.clone(), metrics.clone());
            tls
        }
        _ => {
            let mut keeper = Keeper::new(&client, &args.certs)?;
            tracing::info!(
                secret = ?args.certs.certificate_secret,
                namespace = %args.certs.namespace,
                configuration = ?args.certs.webhook_configuration,
                "provisioning the serving certificate at run time"
            );
            let tls = keeper.first_certificate().await?;
            readiness.certificate.store(false, Ordering::SeqCst);
            let (tls2, metrics, readiness, stopped) = (
                tls.clone(),
                metrics.clone(),
                readiness.clone(),
                stop.stopped(),
            );
            tokio::spawn(keeper.keep(
                tls2,
                metrics,
                move |trusted| {
                    readiness.certificate.store(trusted, Ordering::SeqCst);
                    readiness.update();
                },
                stopped,
            ));
            tls
        }
    };

    let changed = Arc::new(Notify::new());
    let caches = Arc::new(Caches::start(&client, &changed));
    let state = Arc::new(RwLock::new(Arc::new(ClusterState::default())));

    // Snapshot refresher: after the first sync, rebuild on changes, at most every 200 ms.
    {
        let (caches, state, readiness, metrics, cni) = (
            caches.clone(),
            state.clone(),
            readiness.clone(),
            metrics.clone(),
            args.cni.clone(),
        );
        tokio::spawn(async move {
            caches.wait_ready().await;
            loop {
                let snapshot = Arc::new(caches.snapshot(cni.as_deref(), None));
                for (kind, n) in caches.sizes() {
                    metrics.set_cache(kind, n);
                }
                if let Ok(mut guard) = state.write() {
                    *guard = snapshot;
                }
                if !readiness.caches.swap(true, Ordering::SeqCst) {
                    tracing::info!("caches synced");
                    readiness.update();
                }
                // Also once a refresh period without a change: an enforcer that went silent
                // changes nothing, yet its node must stop counting as enforced.
                let _ = tokio::time::timeout(
                    palisade_policy::node_enforcement::STATUS_REFRESH,
                    changed.notified(),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    let config = WebhookConfig {
        checks: CheckConfig {
            modes: args.check_modes.iter().copied().collect(),
        },
        gitops_unmatched_selector: args.gitops_unmatched_selector,
    };
    let confirm: Arc<dyn Confirm> = Arc::new(LiveConfirm {
        caches: caches.clone(),
        cni: args.cni.clone(),
    });
    let config = Arc::new(config);
    let settle = Arc::new(Settle::new(
        Duration::from_secs(args.settle_seconds),
        confirm.clone(),
        Arc::new(EventPublish {
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: "palisade-webhook".into(),
                    instance: std::env::var("POD_NAME").ok(),
                },
            ),
        }),
        config.clone(),
    ));
    let app = router(AppState {
        cluster: state,
        config,
        metrics: metrics.clone(),
        confirm: Some(confirm),
        settle: Some(settle),
    });
    let handle = axum_server::Handle::new();
    tracing::info!(webhook = %args.listen, admin = %args.admin_listen, "listening");
    {
        let (handle, stopped) = (handle.clone(), stop.stopped());
        tokio::spawn(async move {
            stopped.await;
            tracing::info!("finishing in-flight reviews");
            handle.graceful_shutdown(Some(Duration::from_secs(10)));
        });
    }
    let mut server = axum_server::bind_rustls(args.listen, tls).handle(handle);
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    server.serve(app.into_make_service()).await?;
    admin
        .await
        .map_err(|e| format!("admin server task: {e}"))??;
    Ok(())
}

/// The notAfter of the certificate in `path`, as the metric.
fn set_expiry_from_file(metrics: &Metrics, path: &PathBuf) {
    if let Ok(pem) = std::fs::read(path)
        && let Some(c) = crate::certs::material::parse_bundle(&pem).0.first()
    {
        metrics.set_certificate_expiry(c.not_after);
    }
}

/// Certificate reload: cert-manager and the kubelet replace the files in place.
fn spawn_file_reload(tls: RustlsConfig, cert: PathBuf, key: PathBuf, metrics: Arc<Metrics>) {
    tokio::spawn(async move {
        let mut seen = (modified(&cert), modified(&key));
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let mut now = (modified(&cert), modified(&key));
            if now != seen {
                // Let a writer that replaces the two files one after the other finish, so
                // a new certificate is never paired with the old key.
                tokio::time::sleep(Duration::from_millis(500)).await;
                now = (modified(&cert), modified(&key));
                match tls.reload_from_pem_file(&cert, &key).await {
                    Ok(()) => {
                        tracing::info!(cert = %cert.display(), "serving certificate reloaded");
                        set_expiry_from_file(&metrics, &cert);
                        seen = now;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "serving certificate changed but cannot be read; keeping the previous one")
                    }
                }
            }
        }
    });
}

/// Warning Events on the NetworkPolicy, through events.k8s.io.
struct EventPublish {
    recorder: Recorder,
}

impl Publish for EventPublish {
    fn warn<'a>(&'a self, policy: &'a Pending, note: String) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            let reference = ObjectReference {
                api_version: Some("networking.k8s.io/v1".into()),
                kind: Some("NetworkPolicy".into()),
                namespace: Some(policy.namespace.clone()),
                name: Some(policy.name.clone()),
                uid: policy.uid.clone(),
                ..Default::default()
            };
            process::publish_event(
                &self.recorder,
                &reference,
                EventType::Warning,
                settle::REASON,
                "Review",
                note,
            )
            .await;
        })
    }
}

/// Confirms denials against the apiserver's current view of the namespace.
struct LiveConfirm {
    caches: Arc<Caches>,
    cni: Option<String>,
}

impl Confirm for LiveConfirm {
    fn fresh<'a>(
        &'a self,
        namespace: &'a str,
    ) -> futures::future::BoxFuture<'a, Option<ClusterState>> {
        Box::pin(async move {
            match self.caches.live(namespace).await {
                Ok(live) => Some(self.caches.snapshot(self.cni.as_deref(), Some(&live))),
                Err(e) => {
                    tracing::warn!(namespace, error = %e, "cannot confirm a denial against live state; using the cache");
                    None
                }
            }
        })
    }
}
