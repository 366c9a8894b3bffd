//! The `palisade` binary as a user runs it: exit codes, text and JSON output, bad input.

mod common;

use common::{TempFile, on_tutorial, palisade, stdout, succeeded, temp_file, tutorial};

#[test]
fn check_exits_1_on_a_denial_and_names_file_line_and_check() {
    let f = tutorial();
    let o = on_tutorial("check", &["world.yaml", "typo-labels.yaml"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.starts_with(&format!(
        "{f}/typo-labels.yaml:2: production/backend-ingress deny [unmatched-selector]\n    NetworkPolicy production/backend-ingress selects no pod"
    )), "{out}");
    assert!(
        out.ends_with("1 policies checked: 1 denied, 0 warnings\n"),
        "{out}"
    );
}

#[test]
fn check_exits_0_when_only_warnings_remain() {
    let o = on_tutorial(
        "check",
        &["world.yaml", "and-or-confusion.yaml"],
        &["--mode", "unmatched-selector=warn"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("1 policies checked: 0 denied, 2 warnings"));
}

#[test]
fn check_json_lists_findings_with_file_and_line() {
    let f = tutorial();
    let o = on_tutorial("check", &["types-field.yaml"], &["-o", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let finding = &v["findings"][0];
    assert_eq!(finding["check"], "schema");
    assert_eq!(finding["severity"], "deny");
    assert_eq!(finding["object"], "production/database-lockdown");
    assert_eq!(finding["file"], format!("{f}/types-field.yaml"));
    assert_eq!(finding["line"], 8);
    assert_eq!(
        finding["message"],
        "spec.types: unknown field `types` in `spec` (did you mean `policyTypes`?); the apiserver ignores it, so \
         policyTypes defaults to [Ingress], plus Egress only when there are egress rules"
    );
}

#[test]
fn check_reports_shape_mistakes_at_their_line() {
    let path = temp_file(
        "shapes.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  podSelector:\n    color: red\n  ingress:\n  - from:\n    - ipBlock:\n        cidr: 10.0.0.0/33\n    ports:\n    - port: 70000\n",
    );
    let o = palisade(&["check", "-f", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let p = path.display();
    assert!(out.contains(&format!("{p}:6: shop/p deny [schema]\n    spec.podSelector.color: unknown field `color` in `spec.podSelector`: a label selector takes labels under `matchLabels:`")), "{out}");
    // The first semantic mistake is reported where it was written.
    assert!(out.contains(&format!("{p}:10: shop/p deny [schema]\n    spec.ingress[0].from[0].ipBlock.cidr: \"10.0.0.0/33\" is not a CIDR")), "{out}");
}

#[test]
fn unreadable_input_exits_2_with_the_file_and_line_named() {
    let missing = palisade(&["check", "-f", "/nonexistent/policy.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "palisade: /nonexistent/policy.yaml: cannot be read: No such file or directory (os error 2)\n"
    );

    let path = temp_file("broken.yaml", "kind: NetworkPolicy\nspec: [unclosed\n");
    let broken = palisade(&["check", "-f", path.to_str().unwrap()]);
    assert_eq!(broken.status.code(), Some(2));
    let err = String::from_utf8_lossy(&broken.stderr);
    assert_eq!(
        err,
        format!(
            "palisade: {}:2: not valid YAML or JSON: unclosed bracket '['\n",
            path.display()
        )
    );
    assert!(stdout(&broken).starts_with(&format!(
        "{}:2: - deny [unreadable]\n    not valid YAML or JSON: unclosed bracket '['\n",
        path.display()
    )));
}

/// A directory of `files`, removed when the guard drops.
fn temp_dir(files: &[(&str, &str)]) -> TempFile {
    let first = temp_file(files[0].0, files[0].1);
    let dir = first.path.parent().unwrap().to_path_buf();
    for (name, text) in &files[1..] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    // The guard removes the directory; point it at a file inside so `parent()` is the dir.
    first
}

#[test]
fn one_unreadable_file_in_a_directory_is_a_finding_and_the_rest_is_checked() {
    let world = std::fs::read_to_string(format!("{}/world.yaml", tutorial())).unwrap();
    let typo = std::fs::read_to_string(format!("{}/typo-labels.yaml", tutorial())).unwrap();
    let guard = temp_dir(&[
        ("a-world.yaml", &world),
        (
            "b-broken.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [x\n",
        ),
        ("c-typo.yaml", &typo),
    ]);
    let dir = guard.path.parent().unwrap().display().to_string();

    let o = palisade(&["check", "-f", &dir]);
    assert_eq!(o.status.code(), Some(2), "unreadable input is exit code 2");
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "{dir}/b-broken.yaml:4: - deny [unreadable]\n    not valid YAML or JSON: "
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{dir}/c-typo.yaml:2: production/backend-ingress deny [unmatched-selector]"
        )),
        "the files after the broken one are checked: {out}"
    );
    assert!(
        out.ends_with("1 policies checked: 2 denied, 0 warnings; 1 input could not be read\n"),
        "{out}"
    );

    let o = palisade(&["check", "-f", &dir, "-o", "json"]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let checks: Vec<(&str, &str, u64)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap(),
                f["file"].as_str().unwrap(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    let broken = format!("{dir}/b-broken.yaml");
    let typo = format!("{dir}/c-typo.yaml");
    assert_eq!(
        checks,
        vec![
            ("unreadable", broken.as_str(), 4),
            ("unmatched-selector", typo.as_str(), 2)
        ]
    );
}

#[test]
fn a_document_without_kind_is_called_a_fragment() {
    let path = temp_file(
        "patch.yaml",
        "metadata:\n  name: backend\nspec:\n  podSelector: {}\n",
    );
    let o = palisade(&["check", "-f", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).starts_with(&format!(
        "{}:1: default/backend deny [schema]\n    the document has no `kind:`: it is a fragment (a patch, Helm values, part of an object), not a Kubernetes object; kubectl apply refuses it and palisade leaves it out\n",
        path.display()
    )), "{}", stdout(&o));
}

#[test]
fn an_empty_file_is_said_to_be_empty_and_exits_2() {
    let path = temp_file("empty.yaml", "# nothing here yet\n");
    let o = palisade(&["check", "-f", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "palisade: nothing to check: the inputs hold no Kubernetes object\n"
    );
    assert!(stdout(&o).starts_with(&format!(
        "{}: - warn [empty-file]\n    the file is empty (or holds only comments): no Kubernetes object read from it\n",
        path.display()
    )), "{}", stdout(&o));

    let o = palisade(&["reach", "-f", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "palisade: warning: {}: the file is empty (or holds only comments): no Kubernetes object read from it\npalisade: the inputs hold no Pod with status.podIP; nothing to probe\n",
            path.display()
        )
    );
}

#[test]
fn check_help_lists_the_ids_mode_takes() {
    let o = palisade(&["check", "--help"]);
    let out = stdout(&o);
    for id in [
        "enforcement (deny)",
        "unmatched-selector (deny)",
        "egress-dns (deny)",
        "peer-and-or (warn)",
        "named-port (warn)",
        "one-sided (warn)",
        "duplicate-object (warn)",
    ] {
        assert!(out.contains(id), "{id} missing from: {out}");
    }
}

/// The tutorial's backend policy again, as a later file that also lets monitoring in on 8080.
const BACKEND_AGAIN: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend, namespace: production}
spec:
  podSelector:
    matchLabels: {app: api}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector:
        matchLabels: {app: frontend}
    - namespaceSelector:
        matchLabels: {purpose: monitoring}
    ports: [{port: http-api}]
";

#[test]
fn the_last_definition_of_an_object_wins_as_with_kubectl_and_both_are_named() {
    let f = tutorial();
    let again = temp_file("backend-v2.yaml", BACKEND_AGAIN);
    let files = [
        "-f".to_string(),
        format!("{f}/world.yaml"),
        "-f".to_string(),
        format!("{f}/three-tier.yaml"),
        "-f".to_string(),
        again.to_str().unwrap().to_string(),
    ];
    let args = |extra: &[&str]| -> Vec<String> {
        extra
            .iter()
            .map(|s| s.to_string())
            .chain(files.iter().cloned())
            .collect()
    };
    let run = |a: Vec<String>| palisade(&a.iter().map(String::as_str).collect::<Vec<_>>());

    let first_line = std::fs::read_to_string(format!("{f}/three-tier.yaml"))
        .unwrap()
        .lines()
        .position(|l| l == "metadata: {name: backend, namespace: production}")
        .unwrap()
        - 1; // the object starts at its `apiVersion:` line
    let o = run(args(&["check", "--mode", "one-sided=off"]));
    let out = stdout(&o);
    assert!(out.contains(&format!(
        "{again}:1: production/backend warn [duplicate-object]\n    NetworkPolicy production/backend is defined twice: at {f}/three-tier.yaml:{} and at {again}:1; the last definition ({again}:1) is used, as kubectl apply leaves the last one in the cluster. Remove one of them.\n",
        first_line,
        again = again.display()
    )), "{out}");

    // Prometheus reaches the backend's 8080 only under the second definition.
    let o = run(args(&[
        "reach",
        "--from",
        "monitoring/prometheus",
        "--to",
        "production/backend",
        "--port",
        "8080",
        "-o",
        "json",
    ]));
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["probes"][0]["to"], "production/backend");
    assert_eq!(v["probes"][0]["allowed"], true, "{v}");
    assert!(
        v["probes"][0]["reason"]
            .as_str()
            .unwrap()
            .ends_with("ingress allowed by production/backend ingress rule 0"),
        "{v}"
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "palisade: warning: {again}:1: NetworkPolicy production/backend is defined twice: at {f}/three-tier.yaml:{first_line} and at {again}:1; the last definition ({again}:1) is used, as kubectl apply leaves the last one in the cluster. Remove one of them.\n",
            again = again.display()
        )
    );
}

#[test]
fn reach_prints_the_matrix_the_policies_give() {
    let o = on_tutorial(
        "reach",
        &["world.yaml", "three-tier.yaml"],
        &["--port", "8080", "-o", "json"],
    );
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let probes = v["probes"].as_array().unwrap();
    assert_eq!(
        probes.len(),
        36,
        "6 pods x 6 pods x 1 port, a pod to itself included"
    );
    let allowed: Vec<(String, String)> = probes
        .iter()
        .filter(|p| p["allowed"] == true && p["from"].as_str().unwrap().starts_with("production"))
        .map(|p| {
            (
                p["from"].as_str().unwrap().into(),
                p["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    // Besides frontend -> backend, each pod to itself: that never leaves the pod.
    assert_eq!(
        allowed,
        [
            ("production/backend", "production/backend"),
            ("production/database", "production/database"),
            ("production/frontend", "production/backend"),
            ("production/frontend", "production/frontend"),
        ]
        .map(|(f, t)| (f.to_string(), t.to_string()))
    );
    let fe_be = probes
        .iter()
        .find(|p| p["from"] == "production/frontend" && p["to"] == "production/backend")
        .unwrap();
    assert_eq!(
        fe_be["reason"],
        "egress allowed by production/frontend egress rule 0; ingress allowed by production/backend ingress rule 0"
    );
    assert_eq!(fe_be["protocol"], "TCP");
}

#[test]
fn reach_table_has_a_row_per_source_and_a_mark_per_cell() {
    let o = on_tutorial(
        "reach",
        &["world.yaml", "three-tier.yaml"],
        &["--port", "5432", "--to", "production/database"],
    );
    assert_eq!(o.status.code(), Some(0));
    let rows: Vec<String> = stdout(&o)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        rows.contains(&"production/backend ✓".to_string()),
        "{rows:?}"
    );
    assert!(
        rows.contains(&"production/frontend ✗".to_string()),
        "{rows:?}"
    );
    assert!(
        rows.contains(&"1 production/database".to_string()),
        "{rows:?}"
    );
}

#[test]
fn reach_rejects_an_unknown_pod() {
    let o = on_tutorial("reach", &["world.yaml"], &["--from", "nope/nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "palisade: --from nope/nope: no pod with an IP by that name in the inputs\n"
    );
}

#[test]
fn yaml_booleans_in_names_get_a_quoting_hint() {
    let path = temp_file(
        "bool.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n",
    );
    let o = palisade(&["check", "-f", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("cannot be read as Namespace: invalid type: boolean `false`, expected a string (unquoted y, n, yes, no, on, off, true, false are booleans in YAML: quote the value)"), "{}", stdout(&o));
}

/// A pod as `kubectl get pods -A -o yaml` prints it, List item indentation included: managed
/// fields, status conditions and all.
fn kubectl_pod(i: usize) -> String {
    let mut s = format!(
        "- apiVersion: v1
  kind: Pod
  metadata:
    annotations:
      kubectl.kubernetes.io/restartedAt: \"2026-01-01T00:00:00Z\"
    creationTimestamp: \"2026-01-01T00:00:00Z\"
    generateName: web-7d9f8c6b5-
    labels:
      app: web-{app}
      pod-template-hash: 7d9f8c6b5
    name: web-{i}
    namespace: shop-{ns}
    ownerReferences:
    - apiVersion: apps/v1
      blockOwnerDeletion: true
      controller: true
      kind: ReplicaSet
      name: web-7d9f8c6b5
      uid: 0a1b2c3d-0000-4000-8000-{i:012}
    resourceVersion: \"{i}\"
    uid: 1a1b2c3d-0000-4000-8000-{i:012}
    managedFields:
",
        app = i % 7,
        ns = i % 10
    );
    for m in 0..12 {
        s.push_str(&format!(
            "    - apiVersion: v1
      fieldsType: FieldsV1
      fieldsV1:
        f:metadata:
          f:labels:
            .: {{}}
            f:app: {{}}
        f:spec:
          f:containers:
            k:{{\"name\":\"web-{m}\"}}:
              .: {{}}
              f:image: {{}}
      manager: kube-controller-manager
      operation: Update
      time: \"2026-01-01T00:00:00Z\"
"
        ));
    }
    s.push_str(&format!(
        "  spec:
    containers:
    - image: registry.example/web:1.2.3
      imagePullPolicy: IfNotPresent
      name: web
      ports:
      - containerPort: 8080
        name: http
        protocol: TCP
      resources:
        limits: {{cpu: 500m, memory: 256Mi}}
        requests: {{cpu: 100m, memory: 128Mi}}
      volumeMounts:
      - mountPath: /var/run/secrets/kubernetes.io/serviceaccount
        name: kube-api-access
        readOnly: true
    dnsPolicy: ClusterFirst
    nodeName: node-{node}
    restartPolicy: Always
    schedulerName: default-scheduler
    serviceAccountName: default
    terminationGracePeriodSeconds: 30
  status:
    conditions:
    - {{lastTransitionTime: \"2026-01-01T00:00:00Z\", status: \"True\", type: Initialized}}
    - {{lastTransitionTime: \"2026-01-01T00:00:00Z\", status: \"True\", type: Ready}}
    - {{lastTransitionTime: \"2026-01-01T00:00:00Z\", status: \"True\", type: PodScheduled}}
    hostIP: 172.16.0.{node}
    phase: Running
    podIP: 10.1.{hi}.{lo}
    podIPs:
    - ip: 10.1.{hi}.{lo}
    qosClass: Burstable
    startTime: \"2026-01-01T00:00:00Z\"
",
        node = i % 50,
        hi = i / 250,
        lo = i % 250
    ));
    s
}

const WEB_POLICY: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop-0}
spec:
  podSelector:
    matchLabels: {app: web-0}
  ingress:
  - from:
    - podSelector:
        matchLabels: {app: web-1}
    ports: [{port: http}]
";

/// What `check` says of inputs whose one policy passes, the nodes' CNI unknown.
const ONE_POLICY_PASSED: &str = "note: enforcement not run: nothing is known about the nodes' CNI\n1 policies checked: 0 denied, 0 warnings\n";

#[test]
fn a_thousand_pod_kubectl_dump_and_twenty_thousand_documents_are_read() {
    let mut list = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..1000 {
        list.push_str(&kubectl_pod(i));
    }
    list.push_str("metadata:\n  resourceVersion: \"\"\n");
    assert!(list.len() > 5_600_000, "{} bytes", list.len());
    let pods = temp_file("pods.yaml", &list);
    let policy = temp_file("policy.yaml", WEB_POLICY);
    let o = palisade(&[
        "check",
        "-f",
        pods.to_str().unwrap(),
        "-f",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(succeeded(&o), ONE_POLICY_PASSED);

    // 20,344 documents: one namespace, 20,342 small pods and the policy.
    let mut docs = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop-0}\n");
    for i in 0..20_342 {
        docs.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web-{i}\n  namespace: shop-0\n  labels: {{app: web-{}, team: storefront, release: stable}}\nspec:\n  containers:\n  - name: web\n    image: registry.example/web:1.2.3\n    ports: [{{name: http, containerPort: 8080}}]\nstatus: {{phase: Running, podIP: 10.2.{}.{}}}\n",
            i % 7,
            i / 250,
            i % 250
        ));
    }
    docs.push_str("---\n");
    docs.push_str(WEB_POLICY);
    assert!(docs.len() > 5_000_000, "{} bytes", docs.len());
    let many = temp_file("many.yaml", &docs);
    let o = palisade(&["check", "-f", many.to_str().unwrap()]);
    assert_eq!(succeeded(&o), ONE_POLICY_PASSED);
}

#[test]
fn reach_groups_alike_pods_and_gives_the_legend_once() {
    let mut docs = String::new();
    for (name, app) in [("a-1", "a"), ("a-2", "a"), ("a-3", "a"), ("b-1", "b")] {
        docs.push_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop, labels: {{app: {app}}}}}\nspec: {{containers: [{{name: c, image: i, ports: [{{containerPort: 80}}]}}]}}\nstatus: {{phase: Running, podIP: 10.0.0.{}}}\n---\n",
            docs.len() % 200 + 1
        ));
    }
    docs.push_str("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: b}}\n  ingress: []\n");
    let path = temp_file("alike.yaml", &docs);
    let o = palisade(&[
        "reach",
        "-f",
        path.to_str().unwrap(),
        "--port",
        "80",
        "--port",
        "81",
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o),
        "✓ allowed, ✗ blocked; rows: from, columns: to (numbered, key below)

80/TCP
                     1  2
shop/a-1 (+2 alike)  ✓  ✗
shop/b-1             ✓  ✓

81/TCP
                     1  2
shop/a-1 (+2 alike)  ✓  ✗
shop/b-1             ✓  ✓

columns:
   1  shop/a-1 (+2 alike)
   2  shop/b-1
"
    );
    let o = palisade(&[
        "reach",
        "-f",
        path.to_str().unwrap(),
        "--port",
        "80",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["alike"],
        serde_json::json!({"shop/a-1": ["shop/a-2", "shop/a-3"]})
    );
    // 2 x 2 groups, and shop/a-1 to itself, which its group's cell with itself does not decide.
    assert_eq!(v["probes"].as_array().unwrap().len(), 5);
}

#[test]
fn reach_says_how_big_a_large_matrix_is_before_computing_it() {
    let mut docs = String::new();
    for i in 0..1100 {
        docs.push_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p-{i}, namespace: shop, labels: {{app: a-{i}}}}}\nstatus: {{phase: Running, podIP: 10.0.{}.{}}}\n---\n",
            i / 250,
            i % 250
        ));
    }
    let path = temp_file("large.yaml", &docs);
    let o = palisade(&["reach", "-f", path.to_str().unwrap(), "--port", "80"]);
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("palisade: 1100 source and 1100 destination pods, in 1100 and 1100 groups of alike pods (same namespace, labels and ports), × 1 ports: 1,210,000 cells, about "),
        "{err}"
    );
    assert!(
        err.ends_with(" of output. Narrow it with --from, --to or --port.\n"),
        "{err}"
    );
    assert_eq!(
        stdout(&o)
            .lines()
            .filter(|l| l.starts_with("shop/p-"))
            .count(),
        1100
    );
}

#[test]
fn palisade_check_offers_the_label_without_the_service_suffix() {
    let f = tutorial();
    let o = on_tutorial("check", &["world.yaml", "service-name-selector.yaml"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!(
            "{f}/service-name-selector.yaml:2: production/frontend-ingress deny [unmatched-selector]\n    \
             NetworkPolicy production/frontend-ingress selects no pod: its podSelector app=frontend-svc matches no \
             pod and no workload pod template in namespace production, so the policy protects nothing.\n    \
             Evidence: no pod has app=frontend-svc; 1 pod has app=api, 1 pod has app=database, 1 pod has \
             app=frontend. Of these, only app=frontend serves 80/TCP, which this policy allows.\n    \
             Fix: did you mean app=frontend (app=frontend-svc without -svc)? Its pod serves 80/TCP, which this \
             policy allows. Select it:\n      \
             spec:\n        podSelector:\n          matchLabels:\n            app: frontend\n    \
             To accept this policy anyway, annotate it palisade.dev/skip-checks: \"unmatched-selector\".\n\n\
             note: enforcement not run: nothing is known about the nodes' CNI\n\
             1 policies checked: 1 denied, 0 warnings\n"
        )
    );
}
