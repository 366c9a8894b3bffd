//! Prints the NetworkBaseline CustomResourceDefinition generated from the Rust types:
//! `cargo run -p palisade-operator --bin crdgen > charts/palisade/crds/networkbaseline.yaml`
fn main() {
    match palisade_operator::crd::crd_yaml() {
        Ok(yaml) => print!("{yaml}"),
        Err(e) => {
            eprintln!("crdgen: {e}");
            std::process::exit(1);
        }
    }
}
