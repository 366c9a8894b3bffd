//! The `palisade` binary as a user runs it: exit codes, text and JSON output, bad input.

use std::process::{Command, Output};

fn fixtures() -> String {
    format!("{}/tests/fixtures/tutorial", env!("CARGO_MANIFEST_DIR"))
}

fn palisade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .output()
        .expect("palisade runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A file in a directory of its own, removed when the guard drops.
struct TempFile {
    path: std::path::PathBuf,
}

impl TempFile {
    fn to_str(&self) -> Option<&str> {
        self.path.to_str()
    }
    fn display(&self) -> std::path::Display<'_> {
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

fn temp_file(name: &str, text: &str) -> TempFile {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("palisade-cli-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    TempFile { path }
}

#[test]
fn check_exits_1_on_a_denial_and_names_file_line_and_check() {
    let f = fixtures();
    let o = palisade(&[
        "check",
        "-f",
        &format!("{f}/world.yaml"),
        "-f",
        &format!("{f}/typo-labels.yaml"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.starts_with(&format!(
        "{f}/typo-labels.yaml:2: production/backend-ingress deny [unmatched-selector]\n    NetworkPolicy production/backend-ingress selects no pod"
    )), "{out}");
    assert!(
        out.ends_with("1 policies checked: 1 denied, 0 warnings\n"),
        "{out}"
    );
}

#[test]
fn check_exits_0_when_only_warnings_remain() {
    let f = fixtures();
    let o = palisade(&[
        "check",
        "-f",
        &format!("{f}/world.yaml"),
        "-f",
        &format!("{f}/and-or-confusion.yaml"),
        "--mode",
        "unmatched-selector=warn",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("1 policies checked: 0 denied, 2 warnings"));
}

#[test]
fn check_json_lists_findings_with_file_and_line() {
    let f = fixtures();
    let o = palisade(&[
        "check",
        "-o",
        "json",
        "-f",
        &format!("{f}/types-field.yaml"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let finding = &v["findings"][0];
    assert_eq!(finding["check"], "schema");
    assert_eq!(finding["severity"], "deny");
    assert_eq!(finding["object"], "production/database-lockdown");
    assert_eq!(finding["file"], format!("{f}/types-field.yaml"));
    assert_eq!(finding["line"], 8);
    assert_eq!(
        finding["message"],
        "spec.types: unknown field `types` in `spec` (did you mean `policyTypes`?); the apiserver ignores it"
    );
}

#[test]
fn check_reports_shape_mistakes_at_their_line() {
    let path = temp_file(
        "shapes.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  podSelector:\n    color: red\n  ingress:\n  - from:\n    - ipBlock:\n        cidr: 10.0.0.0/33\n    ports:\n    - port: 70000\n",
    );
    let o = palisade(&["check", "-f", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let p = path.display();
    assert!(out.contains(&format!("{p}:6: shop/p deny [schema]\n    spec.podSelector.color: unknown field `color` in `spec.podSelector`: a label selector takes labels under `matchLabels:`")), "{out}");
    // The first semantic mistake is reported where it was written.
    assert!(out.contains(&format!("{p}:10: shop/p deny [schema]\n    spec.ingress[0].from[0].ipBlock.cidr: \"10.0.0.0/33\" is not a CIDR")), "{out}");
}

#[test]
fn unreadable_input_exits_2_with_the_file_named() {
    let missing = palisade(&["check", "-f", "/nonexistent/policy.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .starts_with("palisade: /nonexistent/policy.yaml: ")
    );

    let path = temp_file("broken.yaml", "kind: NetworkPolicy\nspec: [unclosed\n");
    let broken = palisade(&["check", "-f", path.to_str().unwrap()]);
    assert_eq!(broken.status.code(), Some(2));
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(
        err.starts_with(&format!(
            "palisade: {}: not valid YAML or JSON: ",
            path.display()
        )),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}

#[test]
fn reach_prints_the_matrix_the_policies_give() {
    let f = fixtures();
    let o = palisade(&[
        "reach",
        "-f",
        &format!("{f}/world.yaml"),
        "-f",
        &format!("{f}/three-tier.yaml"),
        "--port",
        "8080",
        "-o",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let probes = v["probes"].as_array().unwrap();
    assert_eq!(
        probes.len(),
        36,
        "6 pods x 6 pods x 1 port, a pod to itself included"
    );
    let allowed: Vec<(String, String)> = probes
        .iter()
        .filter(|p| p["allowed"] == true && p["from"].as_str().unwrap().starts_with("production"))
        .map(|p| {
            (
                p["from"].as_str().unwrap().into(),
                p["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        allowed,
        vec![(
            "production/frontend".to_string(),
            "production/backend".to_string()
        )]
    );
    let fe_be = probes
        .iter()
        .find(|p| p["from"] == "production/frontend" && p["to"] == "production/backend")
        .unwrap();
    assert_eq!(
        fe_be["reason"],
        "egress allowed by production/frontend egress rule 0; ingress allowed by production/backend ingress rule 0"
    );
    assert_eq!(fe_be["protocol"], "TCP");
}

#[test]
fn reach_table_has_a_row_per_source_and_a_mark_per_cell() {
    let f = fixtures();
    let o = palisade(&[
        "reach",
        "-f",
        &format!("{f}/world.yaml"),
        "-f",
        &format!("{f}/three-tier.yaml"),
        "--port",
        "5432",
        "--to",
        "production/database",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let rows: Vec<String> = stdout(&o)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        rows.contains(&"production/backend ✓".to_string()),
        "{rows:?}"
    );
    assert!(
        rows.contains(&"production/frontend ✗".to_string()),
        "{rows:?}"
    );
    assert!(
        rows.contains(&"1 production/database".to_string()),
        "{rows:?}"
    );
}

#[test]
fn reach_rejects_an_unknown_pod() {
    let f = fixtures();
    let o = palisade(&[
        "reach",
        "-f",
        &format!("{f}/world.yaml"),
        "--from",
        "nope/nope",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "palisade: --from nope/nope: no pod with an IP by that name in the inputs\n"
    );
}

#[test]
fn yaml_booleans_in_names_get_a_quoting_hint() {
    let path = temp_file(
        "bool.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n",
    );
    let o = palisade(&["check", "-f", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("cannot be read as Namespace: invalid type: boolean `false`, expected a string (unquoted y, n, yes, no, on, off, true, false are booleans in YAML: quote the value)"), "{}", stdout(&o));
}
