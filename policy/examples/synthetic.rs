//! Writes the shared synthetic world (`palisade_policy::synthetic`) as YAML, for measuring the
//! CLI on files: `cargo run --release -p palisade-policy --example synthetic -- NAMESPACES
//! PODS_PER_NAMESPACE NODES PORTS > world.yaml` (see BENCHMARKS.md).

use std::io::Write;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap_or(0))
        .collect();
    let [namespaces, per_ns, nodes, ports] = args[..] else {
        eprintln!("usage: synthetic NAMESPACES PODS_PER_NAMESPACE NODES PORTS");
        std::process::exit(2);
    };
    let text = palisade_policy::synthetic::manifests(namespaces, per_ns, nodes, ports);
    if let Err(e) = std::io::stdout().write_all(text.as_bytes()) {
        eprintln!("synthetic: {e}");
        std::process::exit(1);
    }
}
