//! `implicit-ingress`: a policy with egress rules and no `policyTypes` isolates ingress too.
//! Kubernetes derives the types as Ingress, plus Egress when there are egress rules, so an
//! egress-only policy written that way (many egress examples are) denies all ingress to its pods.

use super::{Context, Issue, list_some, name};
use crate::cluster::Cluster;
use crate::policy::{Direction, Policy};

pub(crate) const FIX: &str = "\
Fix: if only egress was meant, say so:
  spec:
    policyTypes: [Egress]
If denying all ingress to these pods is intended, write policyTypes: [Ingress, Egress].";

pub(crate) fn check(policy: &Policy, ctx: &Context) -> Result<Vec<Issue>, String> {
    let denies_all_ingress = policy.ingress.as_ref().is_some_and(Vec::is_empty);
    if !policy.implicit_types || !denies_all_ingress || !policy.isolates(Direction::Egress) {
        return Ok(Vec::new());
    }
    // Pods whose ingress only this policy isolates: they lose every incoming connection.
    let who = if ctx.knows_pods {
        let cluster = ctx.cluster;
        let selected: Vec<_> = cluster
            .pods_in(&policy.namespace)
            .filter(|p| Cluster::selects(policy, p))
            .collect();
        let newly: Vec<String> = selected
            .iter()
            .filter(|p| {
                !cluster
                    .isolating(p, Direction::Ingress)
                    .any(|(_, other)| other.id() != policy.id())
            })
            .map(|p| p.name.clone())
            .collect();
        if !selected.is_empty() && newly.is_empty() {
            return Ok(Vec::new()); // other policies isolate their ingress already
        }
        if newly.is_empty() {
            format!("pods {}", policy.pod_selector)
        } else {
            list_some(&newly, 3)
        }
    } else {
        format!("pods {}", policy.pod_selector)
    };
    let summary = format!(
        "no policyTypes: ingress to {} is denied too; write policyTypes: [Egress]",
        if who.chars().count() > 30 {
            "its pods"
        } else {
            &who
        }
    );
    let detail = format!(
        "NetworkPolicy {} has egress rules and no policyTypes, so Kubernetes sets policyTypes to \
         [Ingress, Egress]: having no ingress rules, it denies all ingress to {who} (in namespace \
         {}), not only egress.\n{FIX}",
        name(policy),
        policy.namespace,
    );
    Ok(vec![Issue::warning(summary, detail)])
}
