//! One test per rule of the NetworkPolicy semantics that the conformance model does not show.

mod common;

use common::{pod, tcp, world};
use palisade_policy::{Cluster, Decision, Endpoint, Protocol};

const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: app, labels: {team: shop}}
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Pod, metadata: {name: web, namespace: app, labels: {app: web}},
   spec: {nodeName: n1, containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080}]}]},
   status: {phase: Running, podIP: 10.0.0.1}}
- {apiVersion: v1, kind: Pod, metadata: {name: db, namespace: app, labels: {app: db}},
   spec: {nodeName: n2, containers: [{name: c, image: i, ports: [{name: sql, containerPort: 5432}]}]},
   status: {phase: Running, podIP: 10.0.0.2}}
- {apiVersion: v1, kind: Pod, metadata: {name: agent, namespace: app, labels: {app: web}},
   spec: {nodeName: n1, hostNetwork: true, containers: [{name: c, image: i}]},
   status: {phase: Running, podIP: 192.168.0.1}}
- {apiVersion: v1, kind: Pod, metadata: {name: done, namespace: app, labels: {app: web}},
   spec: {nodeName: n1, containers: [{name: c, image: i}]},
   status: {phase: Succeeded, podIP: 10.0.0.3}}
---
"#;

fn with(policies: &str) -> Cluster {
    world(&format!("{PODS}{policies}"))
}

/// The policy `app/web-out` isolating `app/web` for egress, allowing the `rules` (YAML list
/// items under `egress:`).
fn web_egress(rules: &str) -> String {
    format!(
        "\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: web-out, namespace: app}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: web}}}}\n  policyTypes: [Egress]\n  egress:\n{rules}"
    )
}

const DB_FROM_WEB: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-web, namespace: app}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
"#;

#[test]
fn unselected_pods_are_not_isolated() {
    let c = with(DB_FROM_WEB);
    // db is isolated; web is not, so anything reaches web.
    assert!(tcp(&c, "app/db", "app/web", 80));
    assert!(tcp(&c, "app/web", "app/db", 5432));
}

#[test]
fn host_network_and_finished_pods_are_not_peers() {
    let c = with(DB_FROM_WEB);
    // Both carry app=web, but a hostNetwork pod and a Succeeded pod are not pod peers.
    assert!(!tcp(&c, "app/agent", "app/db", 5432));
    assert!(!tcp(&c, "app/done", "app/db", 5432));
}

#[test]
fn host_network_pods_are_never_targets() {
    let c = with(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: app}\nspec: {podSelector: {}}\n",
    );
    assert!(tcp(&c, "app/db", "app/agent", 22));
    assert!(!tcp(&c, "app/db", "app/web", 8080));
}

#[test]
fn traffic_from_the_pods_own_node_is_always_allowed() {
    let c = with(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: app}\nspec: {podSelector: {}}\n",
    );
    let web = pod(&c, "app/web");
    let own = Endpoint::Node {
        name: "n1",
        ip: Some("192.168.0.1".parse().unwrap()),
    };
    let other = Endpoint::Node {
        name: "n2",
        ip: Some("192.168.0.2".parse().unwrap()),
    };
    let v = c.evaluate(&own, &Endpoint::Pod(web), 8080, Protocol::Tcp);
    assert!(v.allowed());
    assert_eq!(v.ingress, Decision::FromOwnNode);
    assert!(
        !c.evaluate(&other, &Endpoint::Pod(web), 8080, Protocol::Tcp)
            .allowed()
    );
}

#[test]
fn egress_named_ports_resolve_on_the_peer_and_never_match_external_addresses() {
    let c = with(&web_egress("  - ports: [{port: sql}]\n"));
    assert!(tcp(&c, "app/web", "app/db", 5432));
    assert!(!tcp(&c, "app/web", "app/db", 5433));
    let web = pod(&c, "app/web");
    let outside = Endpoint::External("203.0.113.9".parse().unwrap());
    assert!(
        !c.evaluate(&Endpoint::Pod(web), &outside, 5432, Protocol::Tcp)
            .allowed()
    );
}

#[test]
fn ip_block_peers_match_external_addresses() {
    let c = with(&web_egress(
        "  - to: [{ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.128/25]}}]\n",
    ));
    let web = Endpoint::Pod(pod(&c, "app/web"));
    let ext = |ip: &str| {
        c.evaluate(
            &web,
            &Endpoint::External(ip.parse().unwrap()),
            443,
            Protocol::Tcp,
        )
        .allowed()
    };
    assert!(ext("203.0.113.9"));
    assert!(!ext("203.0.113.200"));
    assert!(!ext("198.51.100.1"));
    assert!(!tcp(&c, "app/web", "app/db", 5432));
}

#[test]
fn verdicts_name_the_deciding_policy_and_rule() {
    let c = with(DB_FROM_WEB);
    let (web, db) = (pod(&c, "app/web"), pod(&c, "app/db"));
    let ok = c.evaluate(&Endpoint::Pod(web), &Endpoint::Pod(db), 5432, Protocol::Tcp);
    assert_eq!(
        ok.reason("app/web", "app/db", 5432, Protocol::Tcp),
        "egress not isolated; ingress allowed by app/db-from-web ingress rule 0"
    );
    // db to its own IP never leaves the pod; through a Service IP it hairpins through the node,
    // which judges it as any connection from db to db.
    let own = c.evaluate(&Endpoint::Pod(db), &Endpoint::Pod(db), 5432, Protocol::Tcp);
    assert!(own.allowed());
    let no = c.evaluate_forwarded(&Endpoint::Pod(db), &Endpoint::Pod(db), 5432, Protocol::Tcp);
    assert_eq!(
        no.reason("app/db", "app/db", 5432, Protocol::Tcp),
        "ingress denied: app/db is isolated by app/db-from-web and no rule allows app/db on 5432/TCP; egress not isolated"
    );
}

/// The example of the Kubernetes NetworkPolicy documentation ("test-network-policy").
#[test]
fn kubernetes_documentation_example() {
    let c = world(
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: default}
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {project: myproject}}
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Pod, metadata: {name: db, namespace: default, labels: {role: db}}, status: {phase: Running, podIP: 10.9.0.1}}
- {apiVersion: v1, kind: Pod, metadata: {name: fe, namespace: default, labels: {role: frontend}}, status: {phase: Running, podIP: 10.9.0.2}}
- {apiVersion: v1, kind: Pod, metadata: {name: other, namespace: default, labels: {role: other}}, status: {phase: Running, podIP: 10.9.0.3}}
- {apiVersion: v1, kind: Pod, metadata: {name: proj, namespace: other, labels: {role: x}}, status: {phase: Running, podIP: 10.9.1.1}}
- {apiVersion: v1, kind: Pod, metadata: {name: inblock, namespace: default, labels: {role: x}}, status: {phase: Running, podIP: 172.17.0.5}}
- {apiVersion: v1, kind: Pod, metadata: {name: excepted, namespace: default, labels: {role: x}}, status: {phase: Running, podIP: 172.17.1.5}}
- {apiVersion: v1, kind: Pod, metadata: {name: remote, namespace: default, labels: {role: x}}, status: {phase: Running, podIP: 10.0.0.7}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: test-network-policy, namespace: default}
spec:
  podSelector: {matchLabels: {role: db}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}
    - namespaceSelector: {matchLabels: {project: myproject}}
    - podSelector: {matchLabels: {role: frontend}}
    ports: [{protocol: TCP, port: 6379}]
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/24}}]
    ports: [{protocol: TCP, port: 5978}]
"#,
    );
    for from in ["default/fe", "other/proj", "default/inblock"] {
        assert!(tcp(&c, from, "default/db", 6379), "{from} -> db:6379");
        assert!(!tcp(&c, from, "default/db", 6380), "{from} -> db:6380");
    }
    assert!(!tcp(&c, "default/other", "default/db", 6379));
    assert!(!tcp(&c, "default/excepted", "default/db", 6379));
    assert!(tcp(&c, "default/db", "default/remote", 5978));
    assert!(!tcp(&c, "default/db", "default/remote", 5979));
    assert!(!tcp(&c, "default/db", "default/fe", 5978));
}
