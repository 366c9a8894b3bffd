//! What the tests of the `palisade` binary share: running it as a user does, and files of
//! their own to run it on.

// Each test file uses some of these.
#![allow(dead_code)]

use std::path::{Display, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs the built `palisade` with `args`, from this crate's directory (so a relative path such
/// as `tests/fixtures/...` is read as a user in that directory would).
pub fn palisade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("palisade runs")
}

/// Output as a user reads it.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn stdout(o: &Output) -> String {
    text(&o.stdout)
}

/// The standard output of a run that must have succeeded (exit 0); otherwise fails with what it
/// said on standard error.
pub fn succeeded(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    stdout(o)
}

/// The tutorial's files, shared with the checks' tests in `policy/`.
pub fn tutorial() -> String {
    format!(
        "{}/../policy/tests/fixtures/tutorial",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `palisade COMMAND -f FILE... ARGS`, the files named in the tutorial's directory.
pub fn on_tutorial(command: &str, files: &[&str], args: &[&str]) -> Output {
    let dir = tutorial();
    let paths: Vec<String> = files.iter().map(|f| format!("{dir}/{f}")).collect();
    let mut all = vec![command];
    for path in &paths {
        all.extend(["-f", path.as_str()]);
    }
    all.extend_from_slice(args);
    palisade(&all)
}

/// A file in a directory of its own, removed when the guard drops.
pub struct TempFile {
    pub path: PathBuf,
}

impl TempFile {
    pub fn to_str(&self) -> Option<&str> {
        self.path.to_str()
    }
    pub fn display(&self) -> Display<'_> {
        self.path.display()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `text` written to a file `name` in a new directory of this test process.
pub fn temp_file(name: &str, text: &str) -> TempFile {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("palisade-cli-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("the file is written");
    TempFile { path }
}

/// `palisade reach -f FILE ARGS...` on `yaml` written to a file of its own.
pub fn reach_on(yaml: &str, args: &[&str]) -> Output {
    let file = temp_file("cluster.yaml", yaml);
    let path = file.to_str().expect("a UTF-8 temp path");
    palisade(&[&["reach", "-f", path], args].concat())
}
