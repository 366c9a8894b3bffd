//! The soak's churn: the cluster keeps changing while the faults happen (pods, labels,
//! NetworkPolicies, a ClusterNetworkPolicy, a NetworkBaseline, namespaces opted in and out), and
//! the webhook's verdict on a policy it must refuse is counted every few steps.

use super::*;

/// A NetworkPolicy the webhook must refuse (`unmatched-selector`: it selects no pod), tried
/// again and again by the churn.
const REFUSED_POLICY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: soak-refused, namespace: soak-churn}\nspec:\n  podSelector: {matchLabels: {app: soak-nobody}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: churn}}}]\n";

/// The churn, until `stop`: a Deployment scaled up and down, its pods relabelled, a
/// NetworkPolicy added and removed, a ClusterNetworkPolicy (on the churn namespace's pods)
/// added, edited (tier, priority, action) and removed, the NetworkBaseline `soak` edited, the
/// namespace opted in to `default`, to `soak` and out; and every third step the policy the
/// webhook must refuse written, its verdict counted. `started` is when the probers started.
pub(super) fn churn(
    cp: &ControlPlane,
    seed: u64,
    stop: &AtomicBool,
    steps: &AtomicUsize,
    started: Instant,
) -> Verdicts {
    let mut schedule = Schedule::new(seed ^ 0x5eed);
    let mut verdicts = Verdicts::default();
    let ns = CHURN_NAMESPACE;
    while !stop.load(Ordering::SeqCst) {
        // Errors are part of the weather (the apiserver may be restarting, the webhook may
        // refuse a policy whose peers no pod matches now): the step is skipped.
        let _ = match schedule.below(9) {
            0 => cp.kubectl(&[
                "scale",
                "deployment/churn",
                "-n",
                ns,
                &format!("--replicas={}", 2 + schedule.below(7)),
            ]),
            1 => cp.kubectl(&[
                "label",
                "pods",
                "-n",
                ns,
                "--all",
                "--overwrite",
                &format!("tier={}", ["a", "b"][schedule.below(2)]),
            ]),
            2 => cp.kubectl_stdin(
                &["apply", "-f", "-"],
                &format!(
                    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: tier-a, namespace: {ns}}}\nspec:\n  podSelector: {{matchLabels: {{app: churn}}}}\n  ingress:\n  - from: [{{podSelector: {{matchLabels: {{tier: a}}}}}}]\n    ports: [{{port: 80}}]\n"
                ),
            ),
            3 => cp.kubectl(&[
                "delete",
                "networkpolicy",
                "tier-a",
                "-n",
                ns,
                "--ignore-not-found",
            ]),
            4 => {
                let opt = match schedule.below(3) {
                    0 => "palisade.dev/baseline=default",
                    1 => "palisade.dev/baseline=soak",
                    _ => "palisade.dev/baseline-",
                };
                cp.kubectl(&["label", "namespace", ns, "--overwrite", opt])
            }
            5 => cp.kubectl_stdin(
                &["apply", "-f", "-"],
                &churn_cluster_policy(
                    ["Admin", "Baseline"][schedule.below(2)],
                    10 + schedule.below(20),
                    ["Accept", "Deny", "Pass"][schedule.below(3)],
                ),
            ),
            6 => cp.kubectl(&[
                "delete",
                "clusternetworkpolicy",
                "soak-churn",
                "--ignore-not-found",
            ]),
            7 => cp.kubectl_stdin(
                &["apply", "-f", "-"],
                &soak_baseline(
                    ["Enforce", "Audit"][schedule.below(2)],
                    schedule.below(2) == 0,
                ),
            ),
            _ => cp.kubectl(&["get", "pods", "-n", ns]),
        };
        if steps.fetch_add(1, Ordering::SeqCst).is_multiple_of(3) {
            try_refused_policy(cp, started, &mut verdicts);
        }
        std::thread::sleep(Duration::from_millis(700 + 100 * schedule.below(10) as u64));
    }
    verdicts
}

/// Writes [`REFUSED_POLICY`] and counts the verdict; one admitted is deleted at once.
fn try_refused_policy(cp: &ControlPlane, started: Instant, verdicts: &mut Verdicts) {
    let Ok(o) = cp.kubectl_stdin(&["apply", "-f", "-"], REFUSED_POLICY) else {
        verdicts.no_answer += 1;
        return;
    };
    let said = crate::util::text(&o);
    if o.status.success() {
        verdicts.admitted.push(started.elapsed());
        let _ = cp.kubectl(&[
            "delete",
            "networkpolicy",
            "soak-refused",
            "-n",
            CHURN_NAMESPACE,
            "--ignore-not-found",
        ]);
    } else if said.contains("failed calling webhook") {
        verdicts.webhook_unreachable += 1;
    } else if said.contains("denied the request") {
        verdicts.refused += 1;
    } else {
        verdicts.no_answer += 1;
    }
}

/// The churn's ClusterNetworkPolicy: on the churn namespace's pods only, ingress from
/// `production` on port 80 (no NetworkPolicy rule of the churn names those peers, so it
/// shadows none of them).
fn churn_cluster_policy(tier: &str, priority: usize, action: &str) -> String {
    format!(
        "apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {{name: soak-churn}}\nspec:\n  tier: {tier}\n  priority: {priority}\n  subject:\n    namespaces: {{matchLabels: {{kubernetes.io/metadata.name: {CHURN_NAMESPACE}}}}}\n  ingress:\n  - name: from-production\n    action: {action}\n    from: [{{namespaces: {{matchLabels: {{kubernetes.io/metadata.name: production}}}}}}]\n    protocols: [{{tcp: {{destinationPort: {{number: 80}}}}}}]\n"
    )
}

/// The NetworkBaseline `soak` the churn edits and opts its namespace in to.
fn soak_baseline(mode: &str, from_production: bool) -> String {
    let from = if from_production {
        "[production]"
    } else {
        "[]"
    };
    format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: NetworkBaseline\nmetadata: {{name: soak}}\nspec:\n  policyTypes: [Ingress]\n  mode: {mode}\n  allow: {{sameNamespace: true, fromNamespaces: {from}}}\n"
    )
}

/// Creates the churn namespace and its Deployment (busybox serving port 80 on both nodes).
pub fn create_churn(cp: &ControlPlane) -> Result<(), Error> {
    cp.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {CHURN_NAMESPACE}}}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: churn, namespace: {CHURN_NAMESPACE}}}\n\
         spec:\n  replicas: 4\n  selector: {{matchLabels: {{app: churn}}}}\n  template:\n    metadata: {{labels: {{app: churn, tier: a}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {BUSYBOX_IMAGE}\n        imagePullPolicy: Never\n        command: [sh, -c, \"nc -ll -p 80 -e /bin/true\"]\n        ports: [{{containerPort: 80}}]\n"
    ))?;
    Ok(())
}

/// The namespace of the filler pods (see [`create_filler`]).
pub const FILLER_NAMESPACE: &str = "soak-filler";

/// `pods` small pods (busybox serving port 80) of a Deployment spread evenly over the nodes,
/// in a namespace opted in to the `default` baseline and with a NetworkPolicy of its own
/// (applied after the Deployment: the webhook refuses a policy that selects nothing), so
/// every enforcer holds chains and set entries for each; waits (at most 15 min) until all run.
pub fn create_filler(cp: &ControlPlane, pods: usize) -> Result<(), Error> {
    let ns = FILLER_NAMESPACE;
    let namespace = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{palisade.dev/baseline: default}}}}\n"
    );
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: filler, namespace: {ns}}}\n\
         spec:\n  replicas: {pods}\n  selector: {{matchLabels: {{app: filler}}}}\n  template:\n    metadata: {{labels: {{app: filler}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      automountServiceAccountToken: false\n      topologySpreadConstraints:\n      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {{matchLabels: {{app: filler}}}}}}\n      containers:\n      - name: main\n        image: {BUSYBOX_IMAGE}\n        imagePullPolicy: Never\n        command: [sh, -c, \"nc -ll -p 80 -e /bin/true\"]\n        ports: [{{containerPort: 80}}]\n"
    );
    let policy = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: filler, namespace: {ns}}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: filler}}}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: production}}}}}}]\n    ports: [{{port: 80}}]\n"
    );
    for manifest in [namespace, deployment, policy] {
        cp.apply(&manifest)?;
    }
    cp.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/filler",
        "-n",
        ns,
        "--timeout=15m",
    ])?;
    Ok(())
}
