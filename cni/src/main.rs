//! `palisade-cni`: run by the container runtime as the last plugin of the node's CNI chain (the
//! enforcer installs it). See the library for what it does.

use std::io::{Read, Write};
use std::process::ExitCode;

use palisade_cni::client::Socket;
use palisade_cni::plugin::{Invocation, error_version, run};

fn main() -> ExitCode {
    let var = |name| std::env::var(name).unwrap_or_default();
    let (command, container_id, args) =
        (var("CNI_COMMAND"), var("CNI_CONTAINERID"), var("CNI_ARGS"));
    // The network configuration (VERSION gets only `{"cniVersion": ...}`). Unreadable stdin
    // leaves it empty, which every command but DEL refuses with a decode error.
    let mut stdin = String::new();
    let _ = std::io::stdin().read_to_string(&mut stdin);
    let invocation = Invocation {
        command: &command,
        container_id: &container_id,
        args: &args,
        stdin: &stdin,
    };
    let mut out = std::io::stdout().lock();
    match run(invocation, &Socket) {
        Ok(printed) => {
            if let Some(text) = printed {
                let _ = writeln!(out, "{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(&error_version(&stdin)));
            // The runtime shows stdout's message; stderr lands in its log.
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
