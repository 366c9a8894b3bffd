//! Linux network namespaces made by the harness: created with `ip netns add`, entered by a
//! thread with setns(2), removed on drop.

use std::fs::File;
use std::process::Command;

use crate::Error;

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<(), Error> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| Error::Io {
            what: format!("ip {}", args.join(" ")),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            what: format!("ip {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Writes a sysctl inside the namespace `ns`, or of the root namespace when `None`.
pub fn sysctl(ns: Option<&str>, key: &str, value: &str) -> Result<(), Error> {
    let setting = format!("{key}={value}");
    let mut cmd = Command::new(if ns.is_some() { "ip" } else { "sysctl" });
    if let Some(ns) = ns {
        cmd.args(["netns", "exec", ns, "sysctl"]);
    }
    let out = cmd
        .args(["-qw", &setting])
        .output()
        .map_err(|source| Error::Io {
            what: format!("sysctl {setting}"),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            what: format!("sysctl {setting}"),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// A named network namespace; deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn add(name: &str) -> Result<Self, Error> {
        ip(&["netns", "add", name])?;
        let ns = Self {
            name: name.to_string(),
        };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

/// Moves the calling thread into namespace `name`: sockets it opens afterwards live there.
/// Only for threads the harness spawned for that purpose.
pub fn enter(name: &str) -> Result<(), Error> {
    let path = format!("/run/netns/{name}");
    let f = File::open(&path).map_err(|source| Error::Io {
        what: format!("opening {path}"),
        source,
    })?;
    // Only the calling thread enters the namespace.
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| Error::Io {
        what: format!("setns into {name}"),
        source: e.into(),
    })
}

/// Runs `f` on a thread of its own inside namespace `name` (the caller stays where it is) and
/// returns what `f` returned; a panic in `f` goes on in the caller.
pub fn run_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    let name = name.to_string();
    match std::thread::spawn(move || enter(&name).map(|()| f())).join() {
        Ok(done) => done,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// The namespaces an earlier run left behind, by name prefix.
pub fn list_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}
