//! The webhook's own serving certificate, provisioned and rotated at run time (as Kyverno and
//! Gatekeeper do), so the chart renders no certificate material and GitOps tools see the same
//! objects on every sync.
//!
//! Every replica runs the same pure [`plan`] over the Secret it shares with the others and
//! writes only with the Secret's resourceVersion (a conflict means another replica was first:
//! read again, plan again), so no leader is needed. Each replica serves the Secret's
//! certificate (reloaded when it changes) and keeps every `caBundle` of its
//! ValidatingWebhookConfiguration equal to the Secret's bundle ([`live`]).

pub mod live;
pub mod material;
pub mod plan;
#[cfg(test)]
mod simulation;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

pub use plan::{Wanted, plan, reconcile};

/// How the webhook provisions its own certificate (instead of `--tls-cert`/`--tls-key`).
#[derive(Debug, Clone, clap::Args)]
pub struct CertArgs {
    /// Provision and rotate the serving certificate at run time in this Secret (created and
    /// owned by the webhook, in --namespace) instead of reading --tls-cert/--tls-key.
    #[arg(long, requires = "webhook_configuration", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub certificate_secret: Option<String>,
    /// The Secret's namespace: the pod's own.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// The ValidatingWebhookConfiguration whose every `caBundle` is kept equal to the Secret's
    /// `ca.crt` (and which owns the Secret, so deleting it deletes the Secret).
    #[arg(long, requires = "certificate_secret")]
    pub webhook_configuration: Option<String>,
    /// A DNS name the serving certificate is valid for; repeatable or comma-separated.
    #[arg(long = "certificate-dns-name", value_delimiter = ',')]
    pub dns_names: Vec<String>,
    /// An IP address the serving certificate is valid for; repeatable or comma-separated.
    #[arg(long = "certificate-ip-address", value_delimiter = ',')]
    pub ip_addresses: Vec<IpAddr>,
    /// How long a serving certificate is valid (e.g. 90s, 10m, 12h, 365d); renewed when a
    /// third of it is left.
    #[arg(long, default_value = "365d", value_parser = parse_duration)]
    pub certificate_validity: Duration,
    /// How long a CA is valid; a new one joins the bundle when a third of it is left.
    #[arg(long, default_value = "3650d", value_parser = parse_duration)]
    pub ca_validity: Duration,
    /// How long a new CA is in the bundle before it signs, and a replaced CA stays after the
    /// new certificate is issued (time for every replica and the apiserver to catch up).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub rotation_grace: Duration,
    /// A label of the Secret, KEY=VALUE; repeatable. `app.kubernetes.io/managed-by` is always
    /// `palisade-webhook`.
    #[arg(long = "certificate-label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

impl CertArgs {
    pub fn wanted(&self) -> Result<Wanted, String> {
        let wanted = Wanted {
            ca_name: self
                .webhook_configuration
                .clone()
                .map(|n| format!("{n}-ca"))
                .unwrap_or_else(|| "palisade-webhook-ca".into()),
            dns: self.dns_names.clone(),
            ips: self.ip_addresses.clone(),
            leaf_validity: self.certificate_validity.as_secs() as i64,
            ca_validity: self.ca_validity.as_secs() as i64,
            grace: self.rotation_grace.as_secs() as i64,
        };
        wanted.check()?;
        Ok(wanted)
    }

    pub fn secret_labels(&self) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = self.labels.iter().cloned().collect();
        labels.insert(
            "app.kubernetes.io/managed-by".into(),
            "palisade-webhook".into(),
        );
        labels
    }
}

/// A duration such as `90s`, `10m`, `12h`, `365d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90s, 10m, 12h or 365d"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(format!(
                "{text:?}: unit {unit:?} is none of s, m, h, d (e.g. 90s, 10m, 12h, 365d)"
            ));
        }
    };
    match n.checked_mul(factor) {
        Some(0) => Err(format!("{text:?}: a duration must be more than zero")),
        Some(s) => Ok(Duration::from_secs(s)),
        None => Err(format!("{text:?} is too long")),
    }
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_short_and_long() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43200)));
        assert_eq!(parse_duration("365d"), Ok(Duration::from_secs(365 * 86400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("0s").unwrap_err().contains("more than zero"));
        assert!(parse_duration("3w").unwrap_err().contains("unit \"w\""));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
    }

    #[test]
    fn labels_are_key_value_and_managed_by_is_ours() {
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_label("=b").is_err());
        let args = CertArgs {
            certificate_secret: Some("s".into()),
            namespace: "ns".into(),
            webhook_configuration: Some("v".into()),
            dns_names: vec!["svc.ns.svc".into()],
            ip_addresses: vec![],
            certificate_validity: Duration::from_secs(30),
            ca_validity: Duration::from_secs(90),
            rotation_grace: Duration::from_secs(10),
            labels: vec![("app.kubernetes.io/managed-by".into(), "Helm".into())],
        };
        assert_eq!(
            args.secret_labels()["app.kubernetes.io/managed-by"],
            "palisade-webhook"
        );
        // 10 s of grace twice does not fit in the 10 s a 30 s certificate has left at renewal.
        assert!(args.wanted().unwrap_err().contains("rotation grace"));
    }
}
