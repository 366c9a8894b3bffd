//! The planner over time with a fake clock: the Secret as replicas write it, the webhook
//! configuration's bundle and the served certificate each a step behind (as watches deliver
//! them), and at every step the question the apiserver asks: does the served certificate
//! verify, for the Service's name, against the published bundle?

use std::net::{IpAddr, Ipv4Addr};

use rustls::pki_types::ServerName;

use super::live::verifies;
use super::material::{self, Cert};
use super::plan::{self, CA_BUNDLE, SIGNER_KEY, Stored, TLS_CERT, Wanted};

const NAME: &str = "palisade-webhook.palisade-system.svc";

fn wanted() -> Wanted {
    Wanted {
        ca_name: "palisade-webhook-ca".into(),
        dns: vec![NAME.into(), "palisade-webhook".into()],
        ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        leaf_validity: 30,
        ca_validity: 90,
        grace: 4,
    }
}

fn start() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn bundle_of(stored: &Stored) -> Vec<Cert> {
    material::parse_bundle(&stored.data[CA_BUNDLE]).0
}

fn leaf_of(stored: &Stored) -> Cert {
    material::parse_bundle(&stored.data[TLS_CERT]).0.remove(0)
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from(NAME.to_string()).unwrap()
}

/// What happened over a run.
#[derive(Default, Debug)]
struct Seen {
    leaves: Vec<String>,
    signers: Vec<String>,
    most_cas: usize,
    changes: Vec<String>,
}

/// Runs replicas' planning from `stored` for `seconds`, one step a second; asserts at every
/// step that the served certificate verifies against the published bundle.
fn run(
    mut stored: Option<Stored>,
    mut published: Vec<Cert>,
    wanted: &Wanted,
    from: i64,
    seconds: i64,
) -> (Stored, Vec<Cert>, Seen) {
    let mut seen = Seen::default();
    let mut served: Option<Cert> = stored.as_ref().map(leaf_of);
    for now in from..from + seconds {
        let (_, _, outcome) = plan::reconcile(stored.as_ref(), &published, wanted, now).unwrap();
        if let Some(o) = outcome {
            seen.changes
                .extend(o.changes.iter().map(|c| format!("{}: {c}", now - from)));
            stored = Some(o.stored);
        }
        let current = stored.clone().unwrap();
        let leaf = leaf_of(&current);
        // A replica that has not seen the change yet still serves the previous certificate,
        // and the apiserver still uses the previous bundle: both must work, and so must the
        // new certificate with the previous bundle where it is served already.
        for serving in served.iter().chain([&leaf]) {
            if published.is_empty() {
                continue; // nothing published yet: the first certificate is not served yet
            }
            let pem: String = published.iter().map(Cert::pem).collect();
            let ok = verifies(&serving.der, pem.as_bytes(), &server_name(), now);
            if !ok && serving.fingerprint == leaf.fingerprint && served.as_ref() != Some(&leaf) {
                // A certificate fresh this step may wait for the bundle only when nothing served
                // it yet: readiness holds back a replica until then.
                assert!(
                    seen.leaves.is_empty(),
                    "step {}: a new certificate nobody trusts yet: {:#?}",
                    now - from,
                    seen.changes
                );
                continue;
            }
            assert!(
                ok,
                "step {}: the served certificate does not verify against the published bundle\n{:#?}",
                now - from,
                seen.changes
            );
        }
        if seen.leaves.last() != Some(&leaf.fingerprint) {
            seen.leaves.push(leaf.fingerprint.clone());
        }
        let signer = material::parse_bundle(&current.data[plan::SIGNER_CERT]).0[0]
            .fingerprint
            .clone();
        if seen.signers.last() != Some(&signer) {
            seen.signers.push(signer);
        }
        let bundle = bundle_of(&current);
        seen.most_cas = seen.most_cas.max(bundle.len());
        // One step later, everyone has caught up.
        published = bundle;
        served = Some(leaf);
    }
    (stored.unwrap(), published, seen)
}

#[test]
fn rotations_over_five_minutes_never_serve_an_untrusted_certificate() {
    let w = wanted();
    let t0 = start();
    let (stored, published, seen) = run(None, vec![], &w, t0, 300);
    // A 30 s certificate is renewed every ~20 s; a 90 s CA every ~60 s.
    assert!(seen.leaves.len() >= 12, "{:#?}", seen.changes);
    assert!(seen.signers.len() >= 4, "{:#?}", seen.changes);
    // The new CA joins the old one; a third never does.
    assert_eq!(seen.most_cas, 2, "{:#?}", seen.changes);
    assert!(
        seen.changes
            .iter()
            .any(|c| c.contains("removed") && c.contains("replaced by the signing CA")),
        "{:#?}",
        seen.changes
    );
    let pem: String = published.iter().map(Cert::pem).collect();
    assert!(verifies(
        &leaf_of(&stored).der,
        pem.as_bytes(),
        &server_name(),
        t0 + 300
    ));
}

#[test]
fn after_a_ca_rotation_the_bundle_goes_back_to_one_ca() {
    let w = wanted();
    let t0 = start();
    // Up to just after the first CA rotation's drop: ~60 s + grace for the leaf + grace.
    let (stored, _, seen) = run(None, vec![], &w, t0, 75);
    assert_eq!(seen.signers.len(), 2, "{:#?}", seen.changes);
    let bundle = bundle_of(&stored);
    let signer = material::parse_bundle(&stored.data[plan::SIGNER_CERT])
        .0
        .remove(0);
    assert_eq!(bundle, vec![signer.clone()], "{:#?}", seen.changes);
    assert!(leaf_of(&stored).signed_by(&signer));
}

#[test]
fn a_new_ca_signs_only_after_it_is_published_for_the_grace() {
    let w = wanted();
    let t0 = start();
    // Up to just before the CA has a third of its 90 s left; the leaf was renewed at 21 s and
    // 42 s, so it has more than a third left.
    let (first, published, seen) = run(None, vec![], &w, t0, 61);
    assert_eq!(seen.signers.len(), 1, "{:#?}", seen.changes);
    let state = plan::State::read(Some(&first));
    let old_ca = state.signer.clone().unwrap().cert;
    let at = t0 + 61;
    let p = plan::plan(&state, &published, &w, at);
    assert!(
        p.new_ca.as_deref().unwrap().contains("less than a third"),
        "{p:?}"
    );
    assert_eq!(p.new_leaf, None, "the serving certificate waits: {p:?}");
    let rotated = plan::apply(&state, &p, &w, at).unwrap().stored;
    assert_eq!(bundle_of(&rotated).len(), 2);
    assert_eq!(leaf_of(&rotated), leaf_of(&first));

    let state = plan::State::read(Some(&rotated));
    // Not yet in the webhook configuration: waits, saying so.
    let p = plan::plan(&state, &published, &w, at + 10);
    assert_eq!(p.new_leaf, None);
    assert!(p.waiting.unwrap().contains("trusts the signing CA"));
    // Published, but for less than the grace: waits.
    let p = plan::plan(&state, &bundle_of(&rotated), &w, at + 2);
    assert_eq!(p.new_leaf, None);
    assert!(p.waiting.unwrap().contains("rotation grace"));
    // Published for the grace: a new leaf from the new CA.
    let p = plan::plan(&state, &bundle_of(&rotated), &w, at + 4);
    assert!(p.new_leaf.is_some(), "{p:?}");
    let renewed = plan::apply(&state, &p, &w, at + 4).unwrap().stored;
    let new_ca = state.signer.unwrap().cert;
    assert_ne!(new_ca, old_ca);
    assert!(leaf_of(&renewed).signed_by(&new_ca));
    assert_eq!(
        bundle_of(&renewed).len(),
        2,
        "the old CA stays for the grace"
    );
}

#[test]
fn a_name_change_renews_the_certificate_with_the_new_names() {
    let mut w = wanted();
    let t0 = start();
    let (stored, published, _) = run(None, vec![], &w, t0, 6);
    w.dns.push("palisade.example.com".into());
    let (after, _, seen) = run(Some(stored), published, &w, t0 + 6, 1);
    assert!(
        seen.changes[0].contains("but not palisade.example.com")
            && seen.changes[0].contains("new serving certificate"),
        "{:#?}",
        seen.changes
    );
    assert!(
        leaf_of(&after)
            .sans
            .contains(&"palisade.example.com".to_string())
    );
    assert!(verifies(
        &leaf_of(&after).der,
        &after.data[CA_BUNDLE],
        &ServerName::try_from("palisade.example.com").unwrap(),
        t0 + 7
    ));
    // A replica still wanting the old names (a rolling update) accepts the new certificate
    // instead of renewing it back.
    w.dns.pop();
    let state = plan::State::read(Some(&after));
    let p = plan::plan(&state, &bundle_of(&after), &w, t0 + 8);
    assert_eq!(p.new_leaf, None, "{p:?}");
}

#[test]
fn a_broken_secret_is_rewritten_keeping_the_valid_cas() {
    let w = wanted();
    let t0 = start();
    let (stored, published, _) = run(None, vec![], &w, t0, 6);
    let old_ca = bundle_of(&stored).remove(0);

    // The signer's key is garbage: a new CA, the old one kept, the leaf kept until the new CA
    // is published; the served certificate verifies throughout.
    let mut broken = stored.clone();
    broken.data.insert(
        SIGNER_KEY.into(),
        b"-----BEGIN PRIVATE KEY-----\nnope\n".to_vec(),
    );
    let state = plan::State::read(Some(&broken));
    assert!(
        state
            .problems
            .iter()
            .any(|p| p.starts_with("signer.crt/signer.key:")),
        "{:?}",
        state.problems
    );
    let (repaired, _, seen) = run(Some(broken), published.clone(), &w, t0 + 6, 12);
    assert!(
        seen.changes[0].contains("new signing CA"),
        "{:#?}",
        seen.changes
    );
    assert!(
        seen.changes
            .iter()
            .any(|c| c.contains("rewrote what was broken: signer.crt/signer.key")),
        "{:#?}",
        seen.changes
    );
    assert!(bundle_of(&repaired).len() == 1 && bundle_of(&repaired)[0] != old_ca);

    // ca.crt is garbage and tls.key is missing: the signer goes back in the bundle, a new leaf
    // at once (nothing can serve without its key).
    let mut broken = stored.clone();
    broken.data.insert(CA_BUNDLE.into(), b"garbage".to_vec());
    broken.data.remove(plan::TLS_KEY);
    let (_, _, outcome) = plan::reconcile(Some(&broken), &published, &w, t0 + 7).unwrap();
    let outcome = outcome.unwrap();
    assert_eq!(bundle_of(&outcome.stored), vec![old_ca.clone()]);
    assert!(leaf_of(&outcome.stored).signed_by(&old_ca));
    assert_ne!(leaf_of(&outcome.stored), leaf_of(&stored));
    assert!(
        outcome
            .changes
            .iter()
            .any(|c| c.contains("ca.crt: no PEM certificate in it")),
        "{:?}",
        outcome.changes
    );
}

#[test]
fn cas_the_webhook_configuration_trusts_are_kept_then_dropped_after_the_grace() {
    let w = wanted();
    let t0 = start();
    // A previous release's CA and certificate, still served by its pods.
    let foreign = material::new_ca("previous-release", t0 - 1000, 100_000).unwrap();
    let old_leaf = material::new_leaf(&foreign, &w.dns, &w.ips, t0 - 1000, 100_000).unwrap();
    let (first, _, _) = run(None, vec![foreign.cert.clone()], &w, t0, 1);
    let bundle = bundle_of(&first);
    assert_eq!(bundle.len(), 2);
    assert!(bundle.contains(&foreign.cert));
    let pem: String = bundle.iter().map(Cert::pem).collect();
    assert!(verifies(
        &old_leaf.cert.der,
        pem.as_bytes(),
        &server_name(),
        t0 + 1
    ));
    let (later, _, seen) = run(Some(first), bundle, &w, t0 + 1, 8);
    assert_eq!(bundle_of(&later).len(), 1, "{:#?}", seen.changes);
    assert!(!bundle_of(&later).contains(&foreign.cert));
}

#[test]
fn an_expired_ca_leaves_the_bundle_at_once() {
    let w = wanted();
    let t0 = start();
    let (stored, published, _) = run(None, vec![], &w, t0, 1);
    let expired = material::new_ca("old", t0 - 500, 100).unwrap();
    let mut with_expired = stored.clone();
    let mut pem = String::from_utf8(stored.data[CA_BUNDLE].clone()).unwrap();
    pem.push_str(&expired.cert.pem());
    with_expired.data.insert(CA_BUNDLE.into(), pem.into_bytes());
    let state = plan::State::read(Some(&with_expired));
    let p = plan::plan(&state, &published, &w, t0 + 1);
    assert_eq!(p.drop.len(), 1, "{p:?}");
    assert!(p.drop[0].1.starts_with("expired at"), "{p:?}");
}

#[test]
fn a_generated_certificate_verifies_for_its_names_only() {
    let w = wanted();
    let t0 = start();
    let ca = material::new_ca("test", t0, 90).unwrap();
    let leaf = material::new_leaf(&ca, &w.dns, &w.ips, t0, 30).unwrap();
    let bundle = ca.cert.pem();
    for name in [
        ServerName::try_from(NAME).unwrap(),
        ServerName::try_from("palisade-webhook").unwrap(),
        ServerName::from(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    ] {
        assert!(verifies(
            &leaf.cert.der,
            bundle.as_bytes(),
            &name.to_owned(),
            t0 + 1
        ));
    }
    assert!(!verifies(
        &leaf.cert.der,
        bundle.as_bytes(),
        &ServerName::try_from("other.palisade-system.svc").unwrap(),
        t0 + 1
    ));
    // Not after it expires, nor against another CA.
    assert!(!verifies(
        &leaf.cert.der,
        bundle.as_bytes(),
        &server_name(),
        t0 + 31
    ));
    let other = material::new_ca("other", t0, 90).unwrap();
    assert!(!verifies(
        &leaf.cert.der,
        other.cert.pem().as_bytes(),
        &server_name(),
        t0 + 1
    ));
    // A leaf never outlives its CA.
    let long = material::new_leaf(&ca, &w.dns, &w.ips, t0, 1000).unwrap();
    assert_eq!(long.cert.not_after, ca.cert.not_after);
    assert_eq!(leaf.cert.sans, material::wanted_sans(&w.dns, &w.ips));
}
