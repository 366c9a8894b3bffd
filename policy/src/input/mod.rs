//! Reading Kubernetes objects from YAML/JSON files for the CLI: multi-document streams, `List`
//! kinds, directories; shape mistakes reported with file and line.
//!
//! It lives here rather than in the CLI's crate (`palisade-cli`) because it is shared: the
//! CLI's live reading puts the objects it lists through [`Inputs`] too, [`crate::synthetic`]
//! writes and reads clusters through it, and the tests of this crate, the webhook, the enforcer
//! and the e2e harness build their clusters from YAML with it. Moved to `palisade-cli`, this
//! crate's own tests would have to dev-depend on a crate that depends on this one, which builds
//! two copies of its types that do not mix.

mod node;
mod read;
mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace as K8sNamespace, Pod as K8sPod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::de::DeserializeOwned;

pub use node::{Node, Value, parse_documents};
pub use read::{MAX_DEPTH, MAX_FILE_BYTES, STACK_BYTES};
pub use schema::ShapeError;

use crate::cluster_policy::ClusterPolicy;
use crate::cluster_policy_reading::Reading;
use crate::model::{Namespace, Pod, Workload};
use crate::policy::Policy;

/// Input that cannot be read: the CLI reports it as an `unreadable` finding and reads the rest.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not valid YAML or JSON: {message}")]
    Syntax {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}: no .yaml, .yml or .json files found")]
    Empty { path: String },
}

impl LoadError {
    fn path(&self) -> &str {
        match self {
            LoadError::Io { path, .. }
            | LoadError::Syntax { path, .. }
            | LoadError::Empty { path } => path,
        }
    }
    fn line(&self) -> usize {
        match self {
            LoadError::Syntax { line, .. } => *line,
            _ => 0,
        }
    }
    /// The error without its file and line.
    fn message(&self) -> String {
        match self {
            LoadError::Io { source, .. } => format!("cannot be read: {source}"),
            LoadError::Syntax { message, .. } => format!("not valid YAML or JSON: {message}"),
            LoadError::Empty { .. } => "no .yaml, .yml or .json files found".into(),
        }
    }
}

/// What kind of mistake an input [`Problem`] is; its id is the `check` the CLI prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InputCheck {
    /// A file that cannot be read or parsed (deny; exit code 2).
    Unreadable,
    /// The shape of an object: unknown fields, wrong types, no `kind:` (deny).
    Schema,
    /// A ClusterNetworkPolicy whose only mistakes are peers of a kind Palisade does not know:
    /// evaluated failing closed, as the enforcer enforces it (deny: the webhook refuses it).
    FailingClosed,
    /// Two definitions of one object; the last one is used, as `kubectl apply` does (warn).
    DuplicateObject,
    /// A file with no Kubernetes object in it (warn).
    EmptyFile,
}

impl InputCheck {
    pub const ALL: [InputCheck; 5] = [
        InputCheck::Unreadable,
        InputCheck::Schema,
        InputCheck::FailingClosed,
        InputCheck::DuplicateObject,
        InputCheck::EmptyFile,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InputCheck::Unreadable => "unreadable",
            InputCheck::Schema => "schema",
            InputCheck::FailingClosed => "failing-closed",
            InputCheck::DuplicateObject => "duplicate-object",
            InputCheck::EmptyFile => "empty-file",
        }
    }

    pub fn severity(self) -> crate::checks::Severity {
        match self {
            InputCheck::Unreadable | InputCheck::Schema | InputCheck::FailingClosed => {
                crate::checks::Severity::Deny
            }
            InputCheck::DuplicateObject | InputCheck::EmptyFile => crate::checks::Severity::Warn,
        }
    }
}

/// A mistake in the inputs: the CLI reports it as a finding with file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub check: InputCheck,
    pub file: String,
    pub line: usize,
    /// `namespace/name` of the object, when it has one.
    pub object: String,
    pub message: String,
}

/// A NetworkPolicy read from a file, with where it was written.
#[derive(Debug, Clone)]
pub struct SourcePolicy {
    pub file: String,
    pub line: usize,
    pub policy: Policy,
}

/// A ClusterNetworkPolicy read from a file, with where it was written and its annotations
/// (`palisade.dev/skip-checks`).
#[derive(Debug, Clone)]
pub struct SourceClusterPolicy {
    pub file: String,
    pub line: usize,
    pub policy: ClusterPolicy,
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Where an object was defined, and its index in its list.
#[derive(Debug, Clone)]
struct Origin {
    index: usize,
    file: String,
    line: usize,
}

/// Everything read from the inputs. An object defined twice (same kind, namespace and name)
/// counts once, with its last definition, as `kubectl apply` leaves it.
#[derive(Debug, Default)]
pub struct Inputs {
    pub policies: Vec<SourcePolicy>,
    /// ClusterNetworkPolicies (`policy.networking.k8s.io/v1alpha2`).
    pub cluster_policies: Vec<SourceClusterPolicy>,
    pub pods: Vec<Pod>,
    pub namespaces: Vec<Namespace>,
    pub workloads: Vec<Workload>,
    pub problems: Vec<Problem>,
    /// How many objects were read (List items count one by one).
    pub objects: usize,
    seen: HashMap<(String, String), Origin>,
}

impl Inputs {
    /// The inputs as the cluster the checks and the matrix judge against.
    pub fn cluster(&self) -> crate::Cluster {
        crate::Cluster::new(
            self.namespaces.clone(),
            self.pods.clone(),
            self.workloads.clone(),
            self.policies.iter().map(|s| s.policy.clone()).collect(),
        )
        .with_cluster_policies(
            self.cluster_policies
                .iter()
                .map(|s| s.policy.clone())
                .collect(),
        )
    }

    /// Whether any input could not be read.
    pub fn unreadable(&self) -> bool {
        self.problems
            .iter()
            .any(|p| p.check == InputCheck::Unreadable)
    }

    /// Reads files and directories (recursively: `.yaml`, `.yml`, `.json`), `-` for stdin. A
    /// file that cannot be read becomes an `unreadable` problem; the others are still read.
    pub fn load_paths(paths: &[PathBuf]) -> Self {
        let mut inputs = Inputs::default();
        for path in paths {
            if path.as_os_str() == "-" {
                inputs.add_reader("<stdin>", std::io::stdin().lock());
                continue;
            }
            let (files, errors) = collect_files(path);
            for e in errors {
                inputs.unreadable_file(&e);
            }
            if files.is_empty() && std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
                inputs.unreadable_file(&LoadError::Empty {
                    path: path.display().to_string(),
                });
            }
            for file in files {
                let name = file.display().to_string();
                match std::fs::File::open(&file) {
                    Ok(f) => inputs.add_reader(&name, std::io::BufReader::new(f)),
                    Err(source) => inputs.unreadable_file(&LoadError::Io { path: name, source }),
                }
            }
        }
        inputs
    }

    fn unreadable_file(&mut self, e: &LoadError) {
        self.problems.push(Problem {
            check: InputCheck::Unreadable,
            file: e.path().to_string(),
            line: e.line(),
            object: String::new(),
            message: e.message(),
        });
    }

    /// Adds every object of one stream; an error is recorded as an `unreadable` problem.
    fn add_reader(&mut self, file: &str, reader: impl std::io::Read) {
        if let Err(e) = self.read(file, reader) {
            self.unreadable_file(&e);
        }
    }

    fn read(&mut self, file: &str, reader: impl std::io::Read) -> Result<(), LoadError> {
        let before = self.objects;
        let count = read::documents(reader, |doc| self.add_object(file, &doc)).map_err(|e| {
            if e.io {
                LoadError::Io {
                    path: file.into(),
                    source: std::io::Error::other(e.message),
                }
            } else {
                LoadError::Syntax {
                    path: file.into(),
                    line: e.line.unwrap_or(0),
                    message: e.message,
                }
            }
        })?;
        if self.objects == before {
            let what = if count == 0 {
                "the file is empty (or holds only comments): no Kubernetes object read from it"
            } else {
                "the file holds no Kubernetes object (only empty lists)"
            };
            self.problems.push(Problem {
                check: InputCheck::EmptyFile,
                file: file.into(),
                line: 0,
                object: String::new(),
                message: what.into(),
            });
        }
        Ok(())
    }

    /// Adds objects that are already parsed (read from the apiserver): `source` names where
    /// they came from, and they have no line.
    pub fn add_objects<K: serde::Serialize>(&mut self, source: &str, objects: &[K]) {
        for o in objects {
            match serde_json::to_value(o) {
                Ok(v) => self.add_object(source, &Node::from_json(&v, 0)),
                Err(e) => self.unreadable_file(&LoadError::Io {
                    path: source.into(),
                    source: std::io::Error::other(e),
                }),
            }
        }
    }

    /// Adds every object of one YAML/JSON stream.
    pub fn add_text(&mut self, file: &str, text: &str) -> Result<(), LoadError> {
        self.read(file, text.as_bytes())
    }

    fn add_object(&mut self, file: &str, doc: &Node) {
        if matches!(doc.value, Value::Null) {
            return; // an empty document between `---` lines
        }
        self.objects += 1;
        let kind = doc.get("kind").and_then(Node::as_str).unwrap_or_default();
        let object = object_name(doc);
        let problem = |line: usize, message: String| Problem {
            check: InputCheck::Schema,
            file: file.into(),
            line,
            object: object.clone(),
            message,
        };
        if kind.is_empty() {
            self.problems.push(problem(
                doc.line,
                "the document has no `kind:`: it is a fragment (a patch, Helm values, part of an \
                 object), not a Kubernetes object; kubectl apply refuses it and palisade leaves it out"
                    .into(),
            ));
            return;
        }
        if kind == "List" || kind.ends_with("List") {
            self.objects -= 1;
            match doc.get("items").map(|n| &n.value) {
                Some(Value::Seq(items)) => {
                    items.iter().for_each(|item| self.add_object(file, item))
                }
                _ => self.problems.push(problem(
                    doc.line,
                    format!("{kind} without an `items:` list"),
                )),
            }
            return;
        }
        match kind {
            "NetworkPolicy" => {
                let mut shape = Vec::new();
                schema::validate(doc, &schema::NETWORK_POLICY, "", &mut shape);
                for e in shape {
                    self.problems
                        .push(problem(e.line, format!("{}: {}", e.path, e.message)));
                }
                let Some(np) = typed::<NetworkPolicy>(doc, &problem, &mut self.problems) else {
                    return;
                };
                match Policy::compile(&np) {
                    Ok(policy) => self.keep(
                        kind,
                        &object,
                        file,
                        doc.line,
                        Kept::Policy(SourcePolicy {
                            file: file.into(),
                            line: doc.line,
                            policy,
                        }),
                    ),
                    Err(e) => {
                        let at = doc.locate(&e.path);
                        self.problems
                            .push(problem(at.line, format!("{}: {}", e.path, e.message)));
                    }
                }
            }
            "ClusterNetworkPolicy" => self.cluster_policy(doc, file, &object, &problem),
            "Pod" => {
                if let Some(p) = typed::<K8sPod>(doc, &problem, &mut self.problems) {
                    let pod = Pod::from_k8s(&p);
                    self.keep(kind, &object, file, doc.line, Kept::Pod(pod));
                }
            }
            "Namespace" => {
                if let Some(n) = typed::<K8sNamespace>(doc, &problem, &mut self.problems) {
                    let ns = Namespace::from_k8s(&n);
                    self.keep(kind, &object, file, doc.line, Kept::Namespace(ns));
                }
            }
            "Deployment" => {
                self.workload::<Deployment>(doc, file, &problem, Workload::from_deployment)
            }
            "StatefulSet" => {
                self.workload::<StatefulSet>(doc, file, &problem, Workload::from_stateful_set)
            }
            "DaemonSet" => {
                self.workload::<DaemonSet>(doc, file, &problem, Workload::from_daemon_set)
            }
            "ReplicaSet" => {
                self.workload::<ReplicaSet>(doc, file, &problem, Workload::from_replica_set)
            }
            "Job" => self.workload::<Job>(doc, file, &problem, Workload::from_job),
            "CronJob" => self.workload::<CronJob>(doc, file, &problem, Workload::from_cron_job),
            _ => {} // other kinds play no part in NetworkPolicy
        }
    }

    /// Reads a ClusterNetworkPolicy: its shape (unknown fields), then what Palisade makes of it
    /// (tier, priority, actions, peers, ports), each mistake with its path and line.
    fn cluster_policy(
        &mut self,
        doc: &Node,
        file: &str,
        object: &str,
        problem: &dyn Fn(usize, String) -> Problem,
    ) {
        let api_version = doc
            .get("apiVersion")
            .and_then(Node::as_str)
            .unwrap_or_default();
        if !palisade_api::CLUSTER_NETWORK_POLICY_API_VERSIONS.contains(&api_version) {
            self.problems.push(problem(
                doc.line,
                format!(
                    "apiVersion {api_version:?}: Palisade reads ClusterNetworkPolicy of {} \
                     (network-policy-api v0.3; v0.2)",
                    palisade_api::CLUSTER_NETWORK_POLICY_API_VERSIONS.join(" or ")
                ),
            ));
            return;
        }
        let mut shape = Vec::new();
        schema::validate(doc, &schema::CLUSTER_NETWORK_POLICY, "", &mut shape);
        let mut found: Vec<Problem> = shape
            .into_iter()
            .map(|e| problem(e.line, format!("{}: {}", e.path, e.message)))
            .collect();
        let mut unread = Vec::new();
        let cnp = typed::<palisade_api::ClusterNetworkPolicy>(doc, problem, &mut unread);
        found.extend(unread);
        let Some(cnp) = cnp else {
            self.problems.extend(found);
            return;
        };
        // Palisade's one reading, which the enforcer and the webhook share.
        let reading = Reading::of(&cnp);
        found.extend(reading.errors().iter().map(|e| {
            let at = doc.locate(&e.path);
            problem(at.line, format!("{}: {}", e.path, e.message))
        }));
        // A policy enforced failing closed: each of its mistakes says so (its unknown peer
        // kinds are also unknown fields to the schema).
        for mut found in found {
            if let Reading::FailingClosed { rules, .. } = &reading {
                found.check = InputCheck::FailingClosed;
                found.message = format!(
                    "{}; Palisade enforces it failing closed ({rules})",
                    found.message
                );
            }
            self.problems.push(found);
        }
        if let Some(policy) = reading.policy() {
            self.keep(
                "ClusterNetworkPolicy",
                object,
                file,
                doc.line,
                Kept::ClusterPolicy(SourceClusterPolicy {
                    file: file.into(),
                    line: doc.line,
                    policy: policy.clone(),
                    annotations: cnp.metadata.annotations.clone().unwrap_or_default(),
                }),
            );
        }
    }

    fn workload<T: DeserializeOwned>(
        &mut self,
        doc: &Node,
        file: &str,
        problem: &dyn Fn(usize, String) -> Problem,
        f: fn(&T) -> Workload,
    ) {
        if let Some(o) = typed::<T>(doc, problem, &mut self.problems) {
            let w = f(&o);
            let kind = w.kind.clone();
            let object = format!("{}/{}", w.namespace, w.name);
            self.keep(&kind, &object, file, doc.line, Kept::Workload(w));
        }
    }

    /// Stores an object; a second definition of the same object replaces the first, and is
    /// reported with both places.
    fn keep(&mut self, kind: &str, object: &str, file: &str, line: usize, value: Kept) {
        let key = (kind.to_string(), object.to_string());
        if let Some(first) = self.seen.get_mut(&key) {
            let message = format!(
                "{kind} {object} is defined twice: at {}:{} and at {file}:{line}; the last \
                 definition ({file}:{line}) is used, as kubectl apply leaves the last one in the \
                 cluster. Remove one of them.",
                first.file, first.line
            );
            first.file = file.into();
            first.line = line;
            let index = first.index;
            match value {
                Kept::Policy(p) => self.policies[index] = p,
                Kept::ClusterPolicy(p) => self.cluster_policies[index] = p,
                Kept::Pod(p) => self.pods[index] = p,
                Kept::Namespace(n) => self.namespaces[index] = n,
                Kept::Workload(w) => self.workloads[index] = w,
            }
            self.problems.push(Problem {
                check: InputCheck::DuplicateObject,
                file: file.into(),
                line,
                object: object.into(),
                message,
            });
            return;
        }
        let index = match &value {
            Kept::Policy(_) => self.policies.len(),
            Kept::ClusterPolicy(_) => self.cluster_policies.len(),
            Kept::Pod(_) => self.pods.len(),
            Kept::Namespace(_) => self.namespaces.len(),
            Kept::Workload(_) => self.workloads.len(),
        };
        match value {
            Kept::Policy(p) => self.policies.push(p),
            Kept::ClusterPolicy(p) => self.cluster_policies.push(p),
            Kept::Pod(p) => self.pods.push(p),
            Kept::Namespace(n) => self.namespaces.push(n),
            Kept::Workload(w) => self.workloads.push(w),
        }
        self.seen.insert(
            key,
            Origin {
                index,
                file: file.into(),
                line,
            },
        );
    }
}

enum Kept {
    Policy(SourcePolicy),
    ClusterPolicy(SourceClusterPolicy),
    Pod(Pod),
    Namespace(Namespace),
    Workload(Workload),
}

fn typed<T: DeserializeOwned>(
    doc: &Node,
    problem: &dyn Fn(usize, String) -> Problem,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match serde_json::from_value::<T>(doc.to_json()) {
        Ok(v) => Some(v),
        Err(e) => {
            let kind = std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("object");
            let mut message = format!("cannot be read as {kind}: {e}");
            if e.to_string().contains("invalid type: boolean") {
                // YAML 1.1, which kubectl speaks too, reads these words as booleans.
                message.push_str(" (unquoted y, n, yes, no, on, off, true, false are booleans in YAML: quote the value)");
            }
            problems.push(problem(doc.line, message));
            None
        }
    }
}

fn object_name(doc: &Node) -> String {
    let meta = doc.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .unwrap_or("<unnamed>");
    let kind = doc.get("kind").and_then(Node::as_str).unwrap_or_default();
    if kind == "Namespace" || kind == "ClusterNetworkPolicy" {
        return name.to_string();
    }
    let ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Node::as_str)
        .unwrap_or("default");
    format!("{ns}/{name}")
}

/// The `.yaml`, `.yml` and `.json` files under `path` (or `path` itself), in name order, and the
/// errors met on the way (an unreadable directory does not hide its readable siblings).
fn collect_files(path: &Path) -> (Vec<PathBuf>, Vec<LoadError>) {
    let io = |source| LoadError::Io {
        path: path.display().to_string(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return (Vec::new(), vec![io(e)]),
    };
    if !meta.is_dir() {
        return (vec![path.to_path_buf()], Vec::new());
    }
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => return (Vec::new(), vec![io(e)]),
    };
    let (mut files, mut errors) = (Vec::new(), Vec::new());
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            let (f, e) = collect_files(&p);
            files.extend(f);
            errors.extend(e);
        } else if p
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            files.push(p);
        }
    }
    (files, errors)
}
