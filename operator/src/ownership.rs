//! Who owns a baseline's NetworkPolicies, so that Kubernetes' garbage collector removes them
//! when their NetworkBaseline is deleted, also when no operator runs: `helm uninstall` deletes
//! the operator's Deployment and RBAC before the chart's `default` baseline (Helm deletes kinds
//! it does not know last), so the operator can neither see nor remove them then.
//!
//! The deny policy is owned by the baseline; every other policy by the baseline and by the
//! namespace's deny policy. An object goes only once all its owners are gone, so the collector
//! removes the deny first and a namespace is never denied what its baseline allows.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use palisade_api::NetworkBaseline;
use palisade_policy::desired::DENY_POLICY;

/// A reference to `owner` (`None` before it is stored: it has no uid yet). No
/// `blockOwnerDeletion`: that would need more RBAC, and nothing waits on these policies.
fn reference<K: Resource<DynamicType = ()>>(owner: &K, controller: bool) -> Option<OwnerReference> {
    let meta = owner.meta();
    Some(OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        controller: controller.then_some(true),
        block_owner_deletion: None,
    })
}

/// Sets the owners of `policies`, one namespace's desired policies of `baseline`. `deny` is that
/// namespace's stored deny policy, when the desired policies include one: until it is stored the
/// others are owned by the baseline alone, and the next reconcile (its creation is watched) adds
/// it.
pub fn set_owners(
    policies: &mut [NetworkPolicy],
    baseline: &NetworkBaseline,
    deny: Option<&NetworkPolicy>,
) {
    let Some(by_baseline) = reference(baseline, true) else {
        return;
    };
    let by_deny = deny.and_then(|d| reference(d, false));
    for policy in policies {
        let mut owners = vec![by_baseline.clone()];
        if policy.metadata.name.as_deref() != Some(DENY_POLICY) {
            owners.extend(by_deny.clone());
        }
        policy.metadata.owner_references = Some(owners);
    }
}

/// Whether `existing` already has every owner `desired` names.
pub fn owned_as_desired(existing: &NetworkPolicy, desired: &NetworkPolicy) -> bool {
    let have = existing
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default();
    desired
        .metadata
        .owner_references
        .iter()
        .flatten()
        .all(|want| have.iter().any(|h| h.uid == want.uid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;
    use palisade_policy::desired::desired_policies;

    fn stored<K: Resource>(mut object: K, uid: &str) -> K {
        object.meta_mut().uid = Some(uid.into());
        object
    }

    fn baseline() -> NetworkBaseline {
        let spec = serde_json::from_value(serde_json::json!({})).expect("an empty spec");
        stored(NetworkBaseline::new("default", spec), "baseline-uid")
    }

    /// Each policy's name and owners (`Kind/name`, `*` for the controller), sorted by name.
    fn owners(policies: &[NetworkPolicy]) -> Vec<String> {
        let mut all: Vec<String> = policies
            .iter()
            .map(|p| {
                let refs = p.metadata.owner_references.iter().flatten();
                let refs: Vec<String> = refs
                    .map(|r| {
                        let star = if r.controller == Some(true) { "*" } else { "" };
                        format!("{}/{}{star}", r.kind, r.name)
                    })
                    .collect();
                format!(
                    "{}: {}",
                    p.metadata.name.clone().unwrap_or_default(),
                    refs.join(" ")
                )
            })
            .collect();
        all.sort();
        all
    }

    #[test]
    fn the_deny_is_owned_by_the_baseline_and_the_allowances_also_by_the_deny() {
        let b = baseline();
        let mut policies = desired_policies("default", &b.spec, "shop").expect("valid");
        let deny = stored(
            NetworkPolicy {
                metadata: ObjectMeta {
                    name: Some(DENY_POLICY.into()),
                    namespace: Some("shop".into()),
                    ..ObjectMeta::default()
                },
                ..NetworkPolicy::default()
            },
            "deny-uid",
        );
        set_owners(&mut policies, &b, Some(&deny));
        assert_eq!(
            owners(&policies),
            [
                "palisade-baseline-deny: NetworkBaseline/default*",
                "palisade-baseline-dns: NetworkBaseline/default* NetworkPolicy/palisade-baseline-deny",
            ]
        );
        assert_eq!(
            policies[0].metadata.owner_references.as_ref().unwrap()[0].api_version,
            "palisade.dev/v1alpha1"
        );
    }

    #[test]
    fn before_the_deny_is_stored_the_baseline_alone_owns_them() {
        let b = baseline();
        let mut policies = desired_policies("default", &b.spec, "shop").expect("valid");
        set_owners(&mut policies, &b, None);
        assert_eq!(
            owners(&policies),
            [
                "palisade-baseline-deny: NetworkBaseline/default*",
                "palisade-baseline-dns: NetworkBaseline/default*",
            ]
        );
    }

    #[test]
    fn a_policy_missing_an_owner_is_applied_again() {
        let b = baseline();
        let mut desired = desired_policies("default", &b.spec, "shop").expect("valid");
        let before_ownership = desired[0].clone();
        set_owners(&mut desired, &b, None);
        assert!(!owned_as_desired(&before_ownership, &desired[0]));
        assert!(owned_as_desired(&desired[0], &desired[0]));
        // Owners someone else added stay theirs.
        let mut more = desired[0].clone();
        more.metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(OwnerReference {
                uid: "other".into(),
                ..OwnerReference::default()
            });
        assert!(owned_as_desired(&more, &desired[0]));
    }
}
