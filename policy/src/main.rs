use clap::Parser;
use palisade_policy::cli::{Cli, run};

fn main() {
    let outcome = run(Cli::parse());
    print!("{}", outcome.stdout);
    eprint!("{}", outcome.stderr);
    std::process::exit(outcome.code);
}
