use std::io::{BufWriter, Write};

use clap::Parser;
use palisade_cli::{Cli, run};
use palisade_policy::input::STACK_BYTES;

fn main() {
    let cli = Cli::parse();
    // On a thread with room for deeply nested YAML (the parser recurses per level).
    let code = std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let stdout = std::io::stdout();
            let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
            let mut err = std::io::stderr();
            let code = run(cli, &mut out, &mut err);
            let _ = out.flush();
            code
        })
        .map(|t| t.join().unwrap_or(101))
        .unwrap_or_else(|e| {
            eprintln!("palisade: cannot start: {e}");
            101
        });
    std::process::exit(code);
}
