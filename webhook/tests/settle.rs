//! `one-sided` once an apply has settled: one fresh read per quiet namespace, and an Event for
//! each policy still one-sided then (and none for one whose counterpart arrived meanwhile).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use palisade_policy::input::Inputs;
use palisade_webhook::review::{ClusterState, Pending};
use palisade_webhook::server::Confirm;
use palisade_webhook::settle::{Publish, Settle};

const WORLD: &str = include_str!("../../policy/tests/fixtures/tutorial/world.yaml");

fn policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: production}}\nspec: {spec}\n---\n"
    )
}

/// The namespace as a fresh read finds it: whatever `objects` holds by then.
struct Fresh {
    objects: Mutex<String>,
    reads: AtomicUsize,
}

impl Confirm for Fresh {
    fn fresh<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Option<ClusterState>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let mut inputs = Inputs::default();
        inputs.add_text("world.yaml", WORLD).unwrap();
        inputs
            .add_text("policies.yaml", &self.objects.lock().unwrap())
            .unwrap();
        Box::pin(async move {
            Some(ClusterState {
                cluster: inputs.cluster(),
                enforcement: None,
            })
        })
    }
}

#[derive(Default)]
struct Events(Mutex<Vec<(String, String)>>);

impl Publish for Events {
    fn warn<'a>(&'a self, policy: &'a Pending, note: String) -> BoxFuture<'a, ()> {
        self.0.lock().unwrap().push((policy.name.clone(), note));
        Box::pin(async {})
    }
}

fn pending(name: &str) -> Pending {
    Pending {
        namespace: "production".into(),
        name: name.into(),
        uid: None,
    }
}

#[tokio::test]
async fn policies_stored_together_are_judged_together_once_the_namespace_is_quiet() {
    let deny = policy("deny", "{podSelector: {}, policyTypes: [Ingress]}");
    let frontend = policy(
        "frontend",
        "{podSelector: {matchLabels: {app: frontend}}, policyTypes: [Egress], egress: [{to: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: 8080}]}, {ports: [{port: 53, protocol: UDP}]}]}",
    );
    let to_db = policy(
        "frontend-db",
        "{podSelector: {matchLabels: {app: frontend}}, policyTypes: [Egress], egress: [{to: [{podSelector: {matchLabels: {app: database}}}], ports: [{port: 5432}]}]}",
    );
    let backend = policy(
        "backend",
        "{podSelector: {matchLabels: {app: api}}, policyTypes: [Ingress], ingress: [{from: [{podSelector: {matchLabels: {app: frontend}}}], ports: [{port: 8080}]}]}",
    );
    let fresh = Arc::new(Fresh {
        objects: Mutex::new(String::new()),
        reads: AtomicUsize::new(0),
    });
    let events = Arc::new(Events::default());
    let settle = Arc::new(Settle::new(
        Duration::from_millis(300),
        fresh.clone(),
        events.clone(),
        Arc::new(Default::default()),
    ));
    // One apply: the deny, frontend's egress to the backend (one-sided until the backend's
    // policy arrives), egress to the database (one-sided for good), then the backend's policy.
    for (name, yaml) in [
        ("deny", &deny),
        ("frontend", &frontend),
        ("frontend-db", &to_db),
        ("backend", &backend),
    ] {
        fresh.objects.lock().unwrap().push_str(yaml);
        settle.schedule(pending(name));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(fresh.reads.load(Ordering::SeqCst), 1);
    let events = events.0.lock().unwrap();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["frontend-db"]);
    assert!(
        events[0].1.starts_with(
            "NetworkPolicy production/frontend-db egress[0] allows connections that the destinations' ingress \
             policies block, so they will still fail."
        ),
        "{}",
        events[0].1
    );
}
