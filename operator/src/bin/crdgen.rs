//! Prints the NetworkBaseline and NodeEnforcement CustomResourceDefinitions generated from the Rust types:
//! `cargo run -p palisade-operator --bin crdgen > charts/palisade/crds/palisade.dev.yaml`
fn main() {
    match palisade_api::crd_yaml() {
        Ok(yaml) => print!("{yaml}"),
        Err(e) => {
            eprintln!("crdgen: {e}");
            std::process::exit(1);
        }
    }
}
