//! The planner against the cluster: reads and writes the Secret (with its resourceVersion),
//! watches it and the ValidatingWebhookConfiguration by name, serves the Secret's certificate
//! (hot reload) and keeps every `caBundle` equal to the Secret's bundle.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::watcher;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::CertArgs;
use super::material::{self, Cert};
use super::plan::{self, Stored, TLS_CERT, TLS_KEY, Wanted};
use crate::metrics::Metrics;

/// When the Secret's bundle last changed (RFC 3339).
pub const BUNDLE_CHANGED: &str = "palisade.dev/bundle-changed-at";
/// The reason of the Normal Event on the Secret when a certificate or CA is replaced.
pub const ROTATED: &str = "CertificateRotated";

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0}")]
    Config(String),
    #[error("the Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Material(#[from] material::MaterialError),
    #[error("serving the certificate: {0}")]
    Serve(std::io::Error),
}

/// Keeps one replica's view of the Secret and the webhook configuration, and acts on it.
pub struct Keeper {
    secrets: Api<Secret>,
    configs: Api<ValidatingWebhookConfiguration>,
    secret_name: String,
    config_name: String,
    namespace: String,
    wanted: Wanted,
    labels: BTreeMap<String, String>,
    secret: Option<Secret>,
    config: Option<ValidatingWebhookConfiguration>,
    /// The (certificate, key) being served.
    served: Option<(Vec<u8>, Vec<u8>)>,
    waiting_said: Option<String>,
    missing_config_said: bool,
    recorder: Recorder,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn stored(secret: &Secret) -> Stored {
    Stored {
        data: secret
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect(),
        bundle_changed: secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(BUNDLE_CHANGED))
            .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .map(|t| t.as_second()),
    }
}

/// The CA certificates every webhook of the configuration trusts.
pub fn published(config: &ValidatingWebhookConfiguration) -> Vec<Cert> {
    let mut common: Option<Vec<Cert>> = None;
    for hook in config.webhooks.iter().flatten() {
        let bundle = hook
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| material::parse_bundle(&b.0).0)
            .unwrap_or_default();
        common = Some(match common {
            None => bundle,
            Some(c) => c
                .into_iter()
                .filter(|x| bundle.iter().any(|b| b.fingerprint == x.fingerprint))
                .collect(),
        });
    }
    common.unwrap_or_default()
}

/// Whether `cert` (PEM) is valid for `wanted`'s first name and chains to a CA every webhook of
/// `config` trusts: what the apiserver will check.
pub fn trusted(cert: &[u8], config: &ValidatingWebhookConfiguration, wanted: &Wanted) -> bool {
    let Some(name) = wanted
        .dns
        .first()
        .and_then(|d| ServerName::try_from(d.clone()).ok())
        .or_else(|| wanted.ips.first().map(|ip| ServerName::from(*ip)))
    else {
        return false;
    };
    let Some(leaf) = material::parse_bundle(cert).0.into_iter().next() else {
        return false;
    };
    let hooks = config.webhooks.as_deref().unwrap_or_default();
    !hooks.is_empty()
        && hooks.iter().all(|hook| {
            let bundle = hook
                .client_config
                .ca_bundle
                .as_ref()
                .map(|b| b.0.as_slice())
                .unwrap_or_default();
            verifies(&leaf.der, bundle, &name, now())
        })
}

/// Whether the leaf (DER) verifies for `name` against the CA certificates in `bundle` (PEM), as
/// a TLS client would check it at `now` (Unix seconds).
pub fn verifies(leaf: &[u8], bundle: &[u8], name: &ServerName<'static>, now: i64) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    for ca in material::parse_bundle(bundle).0 {
        let _ = roots.add(CertificateDer::from(ca.der));
    }
    if roots.is_empty() {
        return false;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Ok(verifier) =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
    else {
        return false;
    };
    verifier
        .verify_server_cert(
            &CertificateDer::from(leaf.to_vec()),
            &[],
            name,
            &[],
            UnixTime::since_unix_epoch(Duration::from_secs(now.max(0) as u64)),
        )
        .is_ok()
}

impl Keeper {
    pub fn new(client: &kube::Client, args: &CertArgs) -> Result<Self, CertError> {
        let (Some(secret_name), Some(config_name)) =
            (&args.certificate_secret, &args.webhook_configuration)
        else {
            return Err(CertError::Config(
                "--certificate-secret and --webhook-configuration go together".into(),
            ));
        };
        let wanted = args.wanted().map_err(CertError::Config)?;
        Ok(Self {
            secrets: Api::namespaced(client.clone(), &args.namespace),
            configs: Api::all(client.clone()),
            secret_name: secret_name.clone(),
            config_name: config_name.clone(),
            namespace: args.namespace.clone(),
            wanted,
            labels: args.secret_labels(),
            secret: None,
            config: None,
            served: None,
            waiting_said: None,
            missing_config_said: false,
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: "palisade-webhook".into(),
                    instance: std::env::var("POD_NAME").ok(),
                },
            ),
        })
    }

    /// The certificate and key the Secret holds now, when it holds a usable pair.
    fn current(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let data = self.secret.as_ref()?.data.as_ref()?;
        let (crt, key) = (data.get(TLS_CERT)?, data.get(TLS_KEY)?);
        material::parse_keyed(&crt.0, &key.0).ok()?;
        Some((crt.0.clone(), key.0.clone()))
    }

    /// One round: plan and write the Secret, then bring the configuration's bundles to it.
    /// Conflicts re-read the object and end the round (the next one plans again).
    pub async fn round(&mut self) -> Result<(), CertError> {
        let Some(config) = &self.config else {
            if !self.missing_config_said {
                tracing::warn!(
                    configuration = %self.config_name,
                    "no ValidatingWebhookConfiguration of that name; waiting for it before issuing a certificate"
                );
                self.missing_config_said = true;
            }
            return Ok(());
        };
        self.missing_config_said = false;
        let published = published(config);
        let owner = OwnerReference {
            api_version: "admissionregistration.k8s.io/v1".into(),
            kind: "ValidatingWebhookConfiguration".into(),
            name: self.config_name.clone(),
            uid: config.metadata.uid.clone().unwrap_or_default(),
            ..Default::default()
        };
        let stored = self.secret.as_ref().map(stored);
        let (plan, state, outcome) =
            plan::reconcile(stored.as_ref(), &published, &self.wanted, now())?;
        if !state.problems.is_empty() {
            tracing::warn!(
                secret = %format!("{}/{}", self.namespace, self.secret_name),
                problems = %state.problems.join("; "),
                "the certificate Secret is broken: re-creating what is wrong, keeping the CA certificates that are still valid"
            );
        }
        if plan.waiting != self.waiting_said {
            if let Some(w) = &plan.waiting {
                tracing::info!(secret = %self.secret_name, "{w}");
            }
            self.waiting_said = plan.waiting.clone();
        }
        if let Some(outcome) = outcome {
            let changed_at = outcome
                .stored
                .bundle_changed
                .and_then(|t| k8s_openapi::jiff::Timestamp::from_second(t).ok())
                .map(|t| t.to_string())
                .unwrap_or_default();
            let mut secret = Secret {
                metadata: ObjectMeta {
                    name: Some(self.secret_name.clone()),
                    namespace: Some(self.namespace.clone()),
                    labels: Some(self.labels.clone()),
                    annotations: Some(BTreeMap::from([(BUNDLE_CHANGED.into(), changed_at)])),
                    owner_references: Some(vec![owner]),
                    ..Default::default()
                },
                type_: Some("kubernetes.io/tls".into()),
                data: Some(
                    outcome
                        .stored
                        .data
                        .into_iter()
                        .map(|(k, v)| (k, ByteString(v)))
                        .collect(),
                ),
                ..Default::default()
            };
            let written = match &self.secret {
                None => self.secrets.create(&PostParams::default(), &secret).await,
                Some(old) => {
                    secret.metadata.resource_version = old.metadata.resource_version.clone();
                    self.secrets
                        .replace(&self.secret_name, &PostParams::default(), &secret)
                        .await
                }
            };
            match written {
                Ok(s) => {
                    for change in &outcome.changes {
                        tracing::info!(secret = %self.secret_name, "certificate: {change}");
                    }
                    if plan.new_ca.is_some() || plan.new_leaf.is_some() || !plan.drop.is_empty() {
                        let reference = k8s_openapi::api::core::v1::ObjectReference {
                            api_version: Some("v1".into()),
                            kind: Some("Secret".into()),
                            namespace: Some(self.namespace.clone()),
                            name: Some(self.secret_name.clone()),
                            uid: s.metadata.uid.clone(),
                            // This version of the Secret: one Event per rotation, not a
                            // series under the first one's note.
                            resource_version: s.metadata.resource_version.clone(),
                            ..Default::default()
                        };
                        palisade_runtime::process::publish_event(
                            &self.recorder,
                            &reference,
                            EventType::Normal,
                            ROTATED,
                            "Rotate",
                            outcome.changes.join("; "),
                        )
                        .await;
                    }
                    self.secret = Some(s);
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    tracing::debug!(secret = %self.secret_name, "another replica wrote the Secret first; planning again");
                    self.secret = self.secrets.get_opt(&self.secret_name).await?;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.publish().await
    }

    /// Every webhook's `caBundle` to the Secret's bundle.
    async fn publish(&mut self) -> Result<(), CertError> {
        let (Some(config), Some(bundle)) = (
            &self.config,
            self.secret
                .as_ref()
                .and_then(|s| s.data.as_ref())
                .and_then(|d| d.get(plan::CA_BUNDLE)),
        ) else {
            return Ok(());
        };
        if config
            .webhooks
            .iter()
            .flatten()
            .all(|h| h.client_config.ca_bundle.as_ref() == Some(bundle))
        {
            return Ok(());
        }
        let mut updated = config.clone();
        for hook in updated.webhooks.iter_mut().flatten() {
            hook.client_config.ca_bundle = Some(bundle.clone());
        }
        match self
            .configs
            .replace(&self.config_name, &PostParams::default(), &updated)
            .await
        {
            Ok(c) => {
                tracing::info!(configuration = %self.config_name, "caBundle set to the Secret's bundle");
                self.config = Some(c);
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                self.config = self.configs.get_opt(&self.config_name).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reloads the served certificate when the Secret's changed; whether the served one is
    /// trusted by the webhook configuration.
    async fn serve(&mut self, tls: &RustlsConfig, metrics: &Metrics) -> bool {
        if let Some((crt, key)) = self.current()
            && self.served.as_ref() != Some(&(crt.clone(), key.clone()))
        {
            match tls.reload_from_pem(crt.clone(), key.clone()).await {
                Ok(()) => {
                    if let Some(c) = material::parse_bundle(&crt).0.first() {
                        metrics.set_certificate_expiry(c.not_after);
                        tracing::info!(
                            not_after = %k8s_openapi::jiff::Timestamp::from_second(c.not_after).map(|t| t.to_string()).unwrap_or_default(),
                            fingerprint = %c.fingerprint,
                            "serving the Secret's certificate"
                        );
                    }
                    self.served = Some((crt, key));
                }
                Err(e) => tracing::warn!(error = %e, "the Secret's certificate cannot be served"),
            }
        }
        match (&self.served, &self.config) {
            (Some((crt, _)), Some(config)) => trusted(crt, config, &self.wanted),
            _ => false,
        }
    }

    /// Reads both objects and plans until the Secret holds a certificate to serve: what the
    /// HTTPS server starts with.
    pub async fn first_certificate(&mut self) -> Result<RustlsConfig, CertError> {
        let mut delay = Duration::from_millis(500);
        loop {
            let attempt = async {
                self.config = self.configs.get_opt(&self.config_name).await?;
                self.secret = self.secrets.get_opt(&self.secret_name).await?;
                self.round().await
            };
            match attempt.await {
                Ok(()) => {
                    if let Some((crt, key)) = self.current() {
                        let tls = RustlsConfig::from_pem(crt.clone(), key.clone())
                            .await
                            .map_err(CertError::Serve)?;
                        if let Some(c) = material::parse_bundle(&crt).0.first() {
                            tracing::info!(fingerprint = %c.fingerprint, "serving the Secret's certificate");
                        }
                        self.served = Some((crt, key));
                        return Ok(tls);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, secret = %self.secret_name, "cannot provision the serving certificate yet; retrying")
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    /// Watches the Secret and the configuration by name and keeps everything in step until
    /// `stopped`; tells `ready` whether the served certificate is trusted when that changes.
    pub async fn keep(
        mut self,
        tls: RustlsConfig,
        metrics: Arc<Metrics>,
        ready: impl Fn(bool),
        stopped: impl std::future::Future<Output = ()>,
    ) {
        let mut was_trusted = None;
        let by_name =
            |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut secrets = watcher(self.secrets.clone(), by_name(&self.secret_name)).boxed();
        let mut configs = watcher(self.configs.clone(), by_name(&self.config_name)).boxed();
        let (mut secret_init, mut config_init) = (None, None);
        // Time-driven changes (a renewal coming due) are planned at least this often.
        let tick = Duration::from_secs(
            (self.wanted.grace.min(self.wanted.leaf_validity / 10) / 2).clamp(1, 60) as u64,
        );
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                event = secrets.next() => match event {
                    Some(Ok(e)) => apply_event(e, &mut self.secret, &mut secret_init),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, secret = %self.secret_name, "watching the certificate Secret");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    None => return,
                },
                event = configs.next() => match event {
                    Some(Ok(e)) => apply_event(e, &mut self.config, &mut config_init),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, configuration = %self.config_name, "watching the ValidatingWebhookConfiguration");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    None => return,
                },
                _ = tokio::time::sleep(tick) => {}
            }
            if let Err(e) = self.round().await {
                tracing::warn!(error = %e, secret = %self.secret_name, "keeping the serving certificate");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let trusted = self.serve(&tls, &metrics).await;
            if was_trusted != Some(trusted) {
                was_trusted = Some(trusted);
                ready(trusted);
                if trusted {
                    tracing::info!(configuration = %self.config_name, "the served certificate is trusted by the webhook configuration");
                } else {
                    tracing::warn!(configuration = %self.config_name, "the served certificate is not (yet) trusted by the webhook configuration: not ready");
                }
            }
        }
    }
}

/// Folds a watcher event for one named object into `current` (a relist replaces it whole).
fn apply_event<K: Clone>(
    event: watcher::Event<K>,
    current: &mut Option<K>,
    init: &mut Option<Option<K>>,
) {
    match event {
        watcher::Event::Apply(o) => *current = Some(o),
        watcher::Event::Delete(_) => *current = None,
        watcher::Event::Init => *init = Some(None),
        watcher::Event::InitApply(o) => *init = Some(Some(o)),
        watcher::Event::InitDone => *current = init.take().flatten(),
    }
}
