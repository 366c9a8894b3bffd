#![allow(dead_code)]

use palisade_policy::checks::{self, CheckConfig, Context, Enforcement, Report};
use palisade_policy::input::Inputs;
use palisade_policy::{Cluster, Endpoint, Protocol};

pub fn inputs(yaml: &str) -> Inputs {
    let mut inputs = Inputs::default();
    inputs
        .add_text("test.yaml", yaml)
        .expect("test YAML parses");
    assert!(
        inputs.problems.is_empty(),
        "test YAML has problems: {:?}",
        inputs.problems
    );
    inputs
}

pub fn cluster(inputs: &Inputs) -> Cluster {
    inputs.cluster()
}

/// What the checks know of `cluster` where its pods and namespaces were read (files or a live
/// cluster), with `enforcement` as the nodes report it.
pub fn context<'a>(cluster: &'a Cluster, enforcement: Option<&'a Enforcement>) -> Context<'a> {
    Context {
        cluster,
        enforcement,
        knows_pods: true,
        knows_namespaces: true,
    }
}

/// The checks' report on the last policy of `yaml`, in the cluster `yaml` describes.
pub fn review_last(yaml: &str, enforcement: Option<&Enforcement>, config: &CheckConfig) -> Report {
    let inputs = inputs(yaml);
    let c = cluster(&inputs);
    let policy = &inputs.policies.last().expect("a policy").policy;
    checks::run(policy, &context(&c, enforcement), config)
}

pub fn world(yaml: &str) -> Cluster {
    cluster(&inputs(yaml))
}

pub fn pod<'a>(c: &'a Cluster, key: &str) -> &'a palisade_policy::Pod {
    c.pods()
        .iter()
        .find(|p| p.key() == key)
        .unwrap_or_else(|| panic!("no pod {key}"))
}

pub fn allowed(c: &Cluster, from: &str, to: &str, port: u16, protocol: Protocol) -> bool {
    c.evaluate(
        &Endpoint::Pod(pod(c, from)),
        &Endpoint::Pod(pod(c, to)),
        port,
        protocol,
    )
    .allowed()
}

pub fn tcp(c: &Cluster, from: &str, to: &str, port: u16) -> bool {
    allowed(c, from, to, port, Protocol::Tcp)
}

/// The upstream Kubernetes NetworkPolicy e2e model: namespaces x, y, z (labelled ns=<name>),
/// pods a, b, c (labelled pod=<name>) serving 80 and 81 over TCP, UDP and SCTP on ports named
/// serve-<port>-<proto>. Names are quoted: YAML 1.1 (and kubectl) reads a bare `y` as true.
pub fn upstream_model(policies: &str) -> Cluster {
    let mut yaml = String::new();
    for (n, ns) in ["x", "y", "z"].iter().enumerate() {
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: \"{ns}\", labels: {{ns: \"{ns}\"}}}}\n---\n"
        ));
        for (p, pod) in ["a", "b", "c"].iter().enumerate() {
            let mut ports = String::new();
            for proto in ["TCP", "UDP", "SCTP"] {
                for port in [80, 81] {
                    ports.push_str(&format!(
                        "{{name: serve-{port}-{}, containerPort: {port}, protocol: {proto}}}, ",
                        proto.to_lowercase()
                    ));
                }
            }
            yaml.push_str(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: \"{ns}\", labels: {{pod: {pod}}}}}\n\
                 spec: {{nodeName: node-{p}, containers: [{{name: c, image: agnhost, ports: [{ports}]}}]}}\n\
                 status: {{phase: Running, podIP: 10.1.{}.{}}}\n---\n",
                n + 1,
                p + 1
            ));
        }
    }
    yaml.push_str(policies);
    world(&yaml)
}

pub const MODEL_PODS: [&str; 9] = [
    "x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c",
];

/// The matrix as upstream's truth tables print it: a row per source, `.` allowed, `X` blocked.
pub fn truth_table(c: &Cluster, port: u16, protocol: Protocol) -> String {
    MODEL_PODS
        .iter()
        .map(|from| {
            MODEL_PODS
                .iter()
                .map(|to| {
                    if allowed(c, from, to, port, protocol) {
                        '.'
                    } else {
                        'X'
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A table written in a test: whitespace-separated rows of 9 marks.
pub fn table(rows: &str) -> String {
    rows.split_whitespace().collect::<Vec<_>>().join("\n")
}
