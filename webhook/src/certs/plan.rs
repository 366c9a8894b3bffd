//! The planner: from what the Secret holds, what the ValidatingWebhookConfiguration trusts and
//! the time, the next content of the Secret. Pure (a function of its inputs and `now`), so every
//! replica plans the same and the tests drive it with a fake clock.
//!
//! The rules, which keep every served certificate verifiable by the published bundle:
//! - no usable signing CA (first start, or a broken Secret): a new CA, and a new serving
//!   certificate at once; still-valid CA certificates already in the Secret or in the webhook
//!   configuration's `caBundle` are kept, so pods serving an older certificate keep verifying;
//! - the signing CA has less than a third of its lifetime left: a new CA is ADDED to the bundle
//!   and becomes the signer; the serving certificate stays as it is for now;
//! - the serving certificate has less than a third of its lifetime left, lacks a wanted name,
//!   or has another signer: a new one, once the signer has been in the bundle for
//!   `grace` and the webhook configuration trusts it (at once when the old one is unusable);
//! - CAs other than the signer leave the bundle once the serving certificate is the signer's
//!   and `grace` has passed since both the last bundle change and the certificate's issue;
//! - expired CAs leave at any time.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::material::{self, Cert, Keyed, MaterialError};

/// The Secret's keys.
pub const CA_BUNDLE: &str = "ca.crt";
pub const SIGNER_CERT: &str = "signer.crt";
pub const SIGNER_KEY: &str = "signer.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// What the serving certificate must be, and how long things live (seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Common name prefix of the CAs.
    pub ca_name: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub leaf_validity: i64,
    pub ca_validity: i64,
    pub grace: i64,
}

impl Wanted {
    /// Why these lifetimes cannot rotate in time, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.dns.is_empty() && self.ips.is_empty() {
            return Err("the certificate needs at least one DNS name or IP address".into());
        }
        if self.leaf_validity > self.ca_validity {
            return Err(format!(
                "the serving certificate's validity ({} s) is longer than the CA's ({} s)",
                self.leaf_validity, self.ca_validity
            ));
        }
        // A renewal starts with a third of the lifetime left and may wait up to two graces.
        if self.grace * 2 >= self.leaf_validity / 3 {
            return Err(format!(
                "the rotation grace ({} s) must be under a sixth of the serving certificate's validity ({} s)",
                self.grace, self.leaf_validity
            ));
        }
        Ok(())
    }
}

/// What the Secret holds: its data and when its bundle last changed (unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub data: BTreeMap<String, Vec<u8>>,
    pub bundle_changed: Option<i64>,
}

/// The Secret read back: what parses, and what is wrong with the rest.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Whether there is a Secret at all.
    pub exists: bool,
    pub bundle: Vec<Cert>,
    pub signer: Option<Keyed>,
    pub leaf: Option<Keyed>,
    pub bundle_changed: Option<i64>,
    /// What is wrong with the Secret, for the warning.
    pub problems: Vec<String>,
}

impl State {
    pub fn read(stored: Option<&Stored>) -> Self {
        let Some(stored) = stored else {
            return Self::default();
        };
        let mut state = State {
            exists: true,
            bundle_changed: stored.bundle_changed,
            ..Self::default()
        };
        let get = |key: &str| stored.data.get(key).map(Vec::as_slice).unwrap_or_default();
        let (bundle, problems) = material::parse_bundle(get(CA_BUNDLE));
        state
            .problems
            .extend(problems.into_iter().map(|p| format!("{CA_BUNDLE}: {p}")));
        for cert in bundle {
            if !cert.is_ca {
                state.problems.push(format!(
                    "{CA_BUNDLE}: {} is not a CA certificate",
                    cert.subject
                ));
            } else if !state
                .bundle
                .iter()
                .any(|c| c.fingerprint == cert.fingerprint)
            {
                state.bundle.push(cert);
            }
        }
        match material::parse_keyed(get(SIGNER_CERT), get(SIGNER_KEY)) {
            Ok(s) if s.cert.is_ca => state.signer = Some(s),
            Ok(_) => state
                .problems
                .push(format!("{SIGNER_CERT} is not a CA certificate")),
            Err(e) => state
                .problems
                .push(format!("{SIGNER_CERT}/{SIGNER_KEY}: {e}")),
        }
        match material::parse_keyed(get(TLS_CERT), get(TLS_KEY)) {
            Ok(l) => state.leaf = Some(l),
            Err(e) => state.problems.push(format!("{TLS_CERT}/{TLS_KEY}: {e}")),
        }
        state
    }
}

/// What to change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// A new signing CA, and why.
    pub new_ca: Option<String>,
    /// A new serving certificate, and why.
    pub new_leaf: Option<String>,
    /// CA certificates the webhook configuration trusts that join the bundle.
    pub adopt: Vec<Cert>,
    /// The signer, missing from the bundle, joins it.
    pub readd_signer: bool,
    /// CA certificates that leave the bundle (fingerprint, why).
    pub drop: Vec<(String, String)>,
    /// Rewrite what is broken even when no certificate changes.
    pub repair: bool,
    /// A renewal that is due but waits (for the log).
    pub waiting: Option<String>,
}

impl Plan {
    pub fn changes_anything(&self) -> bool {
        self.new_ca.is_some()
            || self.new_leaf.is_some()
            || !self.adopt.is_empty()
            || self.readd_signer
            || !self.drop.is_empty()
            || self.repair
    }
}

fn when(t: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(t)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// The plan for `state` at `now`, given the CA certificates the webhook configuration's
/// `caBundle` holds (`published`).
pub fn plan(state: &State, published: &[Cert], wanted: &Wanted, now: i64) -> Plan {
    let mut plan = Plan {
        repair: !state.problems.is_empty(),
        ..Plan::default()
    };
    for c in &state.bundle {
        if c.expired(now) {
            plan.drop.push((
                c.fingerprint.clone(),
                format!("expired at {}", when(c.not_after)),
            ));
        }
    }
    let signer = state.signer.as_ref().filter(|s| !s.cert.expired(now));
    match signer {
        None if !state.exists => plan.new_ca = Some("no certificate yet".into()),
        None => {
            plan.new_ca = Some(match &state.signer {
                Some(s) => format!("the signing CA expired at {}", when(s.cert.not_after)),
                None => "no usable signing CA in the Secret".into(),
            })
        }
        Some(s) if s.cert.due(now) => {
            plan.new_ca = Some(format!(
                "the signing CA expires at {}, less than a third of its lifetime left",
                when(s.cert.not_after)
            ))
        }
        Some(s) => {
            plan.readd_signer = !state
                .bundle
                .iter()
                .any(|c| c.fingerprint == s.cert.fingerprint);
        }
    }
    // Re-created from scratch: keep what the webhook configuration trusts, for pods still
    // serving an older certificate.
    if signer.is_none() {
        for c in published {
            if c.is_ca
                && !c.expired(now)
                && !state.bundle.iter().any(|b| b.fingerprint == c.fingerprint)
                && !plan.adopt.iter().any(|b| b.fingerprint == c.fingerprint)
            {
                plan.adopt.push(c.clone());
            }
        }
    }
    let in_bundle = |c: &Cert| {
        state.bundle.iter().chain(&plan.adopt).any(|b| {
            b.fingerprint == c.fingerprint && !plan.drop.iter().any(|(f, _)| *f == b.fingerprint)
        }) || (plan.readd_signer && signer.is_some_and(|s| s.cert.fingerprint == c.fingerprint))
    };

    // The serving certificate.
    let leaf = state.leaf.as_ref().map(|l| &l.cert);
    let wanted_sans = material::wanted_sans(&wanted.dns, &wanted.ips);
    let chains = |l: &Cert| {
        state
            .bundle
            .iter()
            .chain(&plan.adopt)
            .any(|ca| in_bundle(ca) && !ca.expired(now) && l.signed_by(ca))
    };
    let (reason, urgent) = match leaf {
        None => ("no serving certificate".to_string(), true),
        Some(l) if l.expired(now) => (format!("it expired at {}", when(l.not_after)), true),
        Some(l) if !chains(l) => ("no CA in the bundle verifies it".to_string(), true),
        Some(l) if l.due(now) => (
            format!(
                "it expires at {}, less than a third of its lifetime left",
                when(l.not_after)
            ),
            false,
        ),
        // Only a missing name renews at once: replicas of two versions during a rolling update
        // must not take turns renewing for their own lists (a name no longer wanted goes at
        // the next renewal).
        Some(l) if wanted_sans.iter().any(|n| !l.sans.contains(n)) => (
            format!(
                "it names {} but not {}",
                l.sans.join(","),
                wanted_sans
                    .iter()
                    .filter(|n| !l.sans.contains(n))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            false,
        ),
        Some(l) if plan.new_ca.is_some() || !signer.is_some_and(|s| l.signed_by(&s.cert)) => (
            "it is not signed by the current signing CA".to_string(),
            false,
        ),
        Some(_) => (String::new(), false),
    };
    if urgent {
        plan.new_leaf = Some(reason);
    } else if !reason.is_empty() {
        let published_signer = signer.filter(|s| {
            published
                .iter()
                .any(|p| p.fingerprint == s.cert.fingerprint)
        });
        let settled = state
            .bundle_changed
            .is_some_and(|t| now - t >= wanted.grace);
        if plan.new_ca.is_some() {
            plan.waiting = Some(format!(
                "renewing the serving certificate ({reason}) waits for the new CA to be published"
            ));
        } else if published_signer.is_none() {
            plan.waiting = Some(format!(
                "renewing the serving certificate ({reason}) waits until the webhook configuration trusts the signing CA"
            ));
        } else if !settled {
            plan.waiting = Some(format!(
                "renewing the serving certificate ({reason}) waits until the signing CA has been in the bundle for the rotation grace"
            ));
        } else {
            plan.new_leaf = Some(reason);
        }
    }

    // CAs the signer replaced.
    if plan.new_ca.is_none()
        && plan.new_leaf.is_none()
        && let (Some(s), Some(l)) = (signer, leaf)
        && l.signed_by(&s.cert)
    {
        let quiet_since = state.bundle_changed.unwrap_or(now).max(l.issued());
        if now - quiet_since >= wanted.grace {
            for c in state.bundle.iter().chain(&plan.adopt) {
                if c.fingerprint != s.cert.fingerprint
                    && !plan.drop.iter().any(|(f, _)| *f == c.fingerprint)
                {
                    plan.drop.push((
                        c.fingerprint.clone(),
                        format!("replaced by the signing CA {}", s.cert.subject),
                    ));
                }
            }
        }
    }
    // A stamp for a bundle whose change time is unknown: counted from now.
    if state.exists && state.bundle_changed.is_none() {
        plan.repair = true;
    }
    plan
}

/// The Secret's next content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stored: Stored,
    /// What changed, one line each, for the log.
    pub changes: Vec<String>,
}

/// Carries out `plan`: generates what is new and lays out the Secret's data.
pub fn apply(
    state: &State,
    plan: &Plan,
    wanted: &Wanted,
    now: i64,
) -> Result<Outcome, MaterialError> {
    let mut changes = Vec::new();
    let mut bundle: Vec<Cert> = state
        .bundle
        .iter()
        .chain(&plan.adopt)
        .filter(|c| !plan.drop.iter().any(|(f, _)| *f == c.fingerprint))
        .cloned()
        .collect();
    for c in &plan.adopt {
        changes.push(format!(
            "kept {} (trusted by the webhook configuration) in the bundle",
            c.subject
        ));
    }
    for (f, why) in &plan.drop {
        if let Some(c) = state
            .bundle
            .iter()
            .chain(&plan.adopt)
            .find(|c| c.fingerprint == *f)
        {
            changes.push(format!("removed {} from the bundle: {why}", c.subject));
        }
    }
    let signer = match &plan.new_ca {
        Some(why) => {
            let ca = material::new_ca(&wanted.ca_name, now, wanted.ca_validity)?;
            changes.push(format!(
                "new signing CA {} valid until {}: {why}",
                ca.cert.subject,
                when(ca.cert.not_after)
            ));
            bundle.push(ca.cert.clone());
            ca
        }
        None => match &state.signer {
            Some(s) => {
                if plan.readd_signer {
                    changes.push(format!(
                        "put the signing CA {} back in the bundle",
                        s.cert.subject
                    ));
                    bundle.push(s.cert.clone());
                }
                s.clone()
            }
            None => return Err(MaterialError::NoSigner),
        },
    };
    let leaf = match (&plan.new_leaf, &state.leaf) {
        (Some(_), _) | (None, None) => {
            let leaf =
                material::new_leaf(&signer, &wanted.dns, &wanted.ips, now, wanted.leaf_validity)?;
            changes.push(format!(
                "new serving certificate valid until {}: {}",
                when(leaf.cert.not_after),
                plan.new_leaf.as_deref().unwrap_or("none")
            ));
            leaf
        }
        (None, Some(l)) => l.clone(),
    };
    let before: Vec<&str> = state
        .bundle
        .iter()
        .map(|c| c.fingerprint.as_str())
        .collect();
    let after: Vec<&str> = bundle.iter().map(|c| c.fingerprint.as_str()).collect();
    let bundle_changed = if before == after && state.bundle_changed.is_some() {
        state.bundle_changed.unwrap_or(now)
    } else {
        now
    };
    if !state.problems.is_empty() {
        changes.push(format!(
            "rewrote what was broken: {}",
            state.problems.join("; ")
        ));
    }
    let data = BTreeMap::from([
        (
            CA_BUNDLE.to_string(),
            bundle
                .iter()
                .map(Cert::pem)
                .collect::<String>()
                .into_bytes(),
        ),
        (SIGNER_CERT.to_string(), signer.cert.pem().into_bytes()),
        (SIGNER_KEY.to_string(), signer.key_pem.clone().into_bytes()),
        (TLS_CERT.to_string(), leaf.cert.pem().into_bytes()),
        (TLS_KEY.to_string(), leaf.key_pem.clone().into_bytes()),
    ]);
    Ok(Outcome {
        stored: Stored {
            data,
            bundle_changed: Some(bundle_changed),
        },
        changes,
    })
}

/// Read, plan and apply: the Secret's next content, or `None` when it is fine as it is; the
/// plan for the log either way.
pub fn reconcile(
    stored: Option<&Stored>,
    published: &[Cert],
    wanted: &Wanted,
    now: i64,
) -> Result<(Plan, State, Option<Outcome>), MaterialError> {
    let state = State::read(stored);
    let plan = plan(&state, published, wanted, now);
    let outcome = if plan.changes_anything() {
        Some(apply(&state, &plan, wanted, now)?)
    } else {
        None
    };
    Ok((plan, state, outcome))
}
