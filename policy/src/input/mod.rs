//! Reading Kubernetes objects from YAML/JSON files for the CLI: multi-document streams, `List`
//! kinds, directories; shape mistakes reported with file and line.

mod node;
mod schema;

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace as K8sNamespace, Pod as K8sPod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::de::DeserializeOwned;

pub use node::{Node, Value, parse_documents};
pub use schema::ShapeError;

use crate::model::{Namespace, Pod, Workload};
use crate::policy::Policy;

/// Input that cannot be read at all (exit code 2 in the CLI).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not valid YAML or JSON: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: no .yaml, .yml or .json files found")]
    Empty { path: String },
}

/// A mistake in one object: the CLI reports it as a deny-level finding with file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
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

/// Everything read from the inputs.
#[derive(Debug, Default)]
pub struct Inputs {
    pub policies: Vec<SourcePolicy>,
    pub pods: Vec<Pod>,
    pub namespaces: Vec<Namespace>,
    pub workloads: Vec<Workload>,
    pub problems: Vec<Problem>,
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
    }

    /// Reads files and directories (recursively: `.yaml`, `.yml`, `.json`), `-` for stdin.
    pub fn load_paths(paths: &[PathBuf]) -> Result<Self, LoadError> {
        let mut inputs = Inputs::default();
        for path in paths {
            if path.as_os_str() == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(
                    |source| LoadError::Io {
                        path: "-".into(),
                        source,
                    },
                )?;
                inputs.add_text("<stdin>", &text)?;
                continue;
            }
            let files = collect_files(path)?;
            if files.is_empty() {
                return Err(LoadError::Empty {
                    path: path.display().to_string(),
                });
            }
            for file in files {
                let name = file.display().to_string();
                let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Io {
                    path: name.clone(),
                    source,
                })?;
                inputs.add_text(&name, &text)?;
            }
        }
        Ok(inputs)
    }

    /// Adds every object of one YAML/JSON stream.
    pub fn add_text(&mut self, file: &str, text: &str) -> Result<(), LoadError> {
        let docs = parse_documents(text).map_err(|message| LoadError::Syntax {
            path: file.into(),
            message,
        })?;
        for doc in &docs {
            self.add_object(file, doc);
        }
        Ok(())
    }

    fn add_object(&mut self, file: &str, doc: &Node) {
        if matches!(doc.value, Value::Null) {
            return; // an empty document between `---` lines
        }
        let kind = doc.get("kind").and_then(Node::as_str).unwrap_or_default();
        let object = object_name(doc);
        let problem = |line: usize, message: String| Problem {
            file: file.into(),
            line,
            object: object.clone(),
            message,
        };
        if kind.is_empty() {
            self.problems
                .push(problem(doc.line, "the document has no `kind:`".into()));
            return;
        }
        if kind == "List" || kind.ends_with("List") {
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
                    Ok(policy) => self.policies.push(SourcePolicy {
                        file: file.into(),
                        line: doc.line,
                        policy,
                    }),
                    Err(e) => {
                        let at = doc.locate(&e.path);
                        self.problems
                            .push(problem(at.line, format!("{}: {}", e.path, e.message)));
                    }
                }
            }
            "Pod" => {
                if let Some(p) = typed::<K8sPod>(doc, &problem, &mut self.problems) {
                    self.pods.push(Pod::from_k8s(&p));
                }
            }
            "Namespace" => {
                if let Some(n) = typed::<K8sNamespace>(doc, &problem, &mut self.problems) {
                    self.namespaces.push(Namespace::from_k8s(&n));
                }
            }
            "Deployment" => self.workload::<Deployment>(doc, &problem, Workload::from_deployment),
            "StatefulSet" => {
                self.workload::<StatefulSet>(doc, &problem, Workload::from_stateful_set)
            }
            "DaemonSet" => self.workload::<DaemonSet>(doc, &problem, Workload::from_daemon_set),
            "ReplicaSet" => self.workload::<ReplicaSet>(doc, &problem, Workload::from_replica_set),
            "Job" => self.workload::<Job>(doc, &problem, Workload::from_job),
            "CronJob" => self.workload::<CronJob>(doc, &problem, Workload::from_cron_job),
            _ => {} // other kinds play no part in NetworkPolicy
        }
    }

    fn workload<T: DeserializeOwned>(
        &mut self,
        doc: &Node,
        problem: &dyn Fn(usize, String) -> Problem,
        f: fn(&T) -> Workload,
    ) {
        if let Some(o) = typed::<T>(doc, problem, &mut self.problems) {
            self.workloads.push(f(&o));
        }
    }
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
    if kind == "Namespace" {
        return name.to_string();
    }
    let ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Node::as_str)
        .unwrap_or("default");
    format!("{ns}/{name}")
}

fn collect_files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let entries = std::fs::read_dir(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            out.extend(collect_files(&p)?);
        } else if p
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            out.push(p);
        }
    }
    Ok(out)
}
