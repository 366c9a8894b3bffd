//! What kubectl shows: the refusal message and the `Warning:` lines. Both stay readable in a
//! terminal whatever the policy: every warning names its policy and fits one line without
//! losing its evidence, and a refusal shows a bounded number of problems in full.

use palisade_policy::Policy;
use palisade_policy::checks::{CheckId, Finding, Report, SKIP_ANNOTATION};
use palisade_policy::policy::AuditMode;

/// kubectl prints `Warning: <text>`; the apiserver asks webhooks to keep `<text>` under 120
/// characters.
pub const MAX_WARNING: usize = 119;
/// Warning lines per review; the rest are counted in one more line.
pub const MAX_WARNINGS: usize = 8;
/// Denials shown in full in a refusal; the next ones by their summary.
pub const FULL_DENIALS: usize = 3;
pub const SHORT_DENIALS: usize = 10;
/// A name is never shortened below this many characters: a line a little too long is better
/// than a policy nobody recognises.
const MIN_NAME: usize = 32;
/// Beyond this a warning is cut whatever it holds (the apiserver truncates long warnings).
const HARD_LIMIT: usize = 240;

/// `s` shortened to `n` characters by dropping its middle, so both ends stay recognisable.
fn shorten_middle(s: &str, n: usize) -> String {
    let len = s.chars().count();
    if len <= n {
        return s.to_string();
    }
    let keep = n.saturating_sub(3);
    let head: String = s.chars().take(keep.div_ceil(2)).collect();
    let tail: String = s.chars().skip(len - keep / 2).collect();
    format!("{head}...{tail}")
}

/// One warning line, `[tag] name: text`. A long policy name is shortened in its middle
/// first, so the evidence at the end of `text` survives; the text itself is cut only beyond
/// what the apiserver keeps.
pub fn warning_line(tag: &str, object: &str, text: &str) -> String {
    let overhead = tag.chars().count() + 5; // "[", "] ", ": "
    let room = MAX_WARNING.saturating_sub(overhead + text.chars().count());
    let object = shorten_middle(object, room.max(MIN_NAME));
    let line = format!("[{tag}] {object}: {text}");
    if line.chars().count() <= HARD_LIMIT {
        return line;
    }
    let cut: String = line.chars().take(HARD_LIMIT - 3).collect();
    format!("{cut}...")
}

/// The warning lines for a review: each warning finding, the gitops note, the skipped checks
/// (a skip is never silent) and unknown ids in the skip annotation; at most [`MAX_WARNINGS`].
pub fn warnings(object: &str, report: &Report, gitops: Option<&str>) -> Vec<String> {
    warnings_after(Vec::new(), object, report, gitops)
}

/// [`warnings`] for a NetworkPolicy, first saying that it is in audit mode when it is: why it
/// is not enforced and how to enforce it.
pub fn policy_warnings(
    policy: &Policy,
    audit: Option<AuditMode>,
    report: &Report,
    gitops: Option<&str>,
) -> Vec<String> {
    let first = audit
        .map(|mode| audit_warning(policy, mode))
        .into_iter()
        .collect();
    warnings_after(first, &policy.name, report, gitops)
}

/// `[audit] NAME: not enforced (annotated palisade.dev/mode: audit): what it denies is logged,
/// not dropped; to enforce it, remove the annotation palisade.dev/mode`.
pub fn audit_warning(policy: &Policy, mode: AuditMode) -> String {
    warning_line(
        "audit",
        &policy.name,
        &format!(
            "not enforced ({}): what it denies is logged, not dropped; to enforce it, {}",
            mode.why(policy),
            mode.promote(policy)
        ),
    )
}

fn warnings_after(
    mut lines: Vec<String>,
    object: &str,
    report: &Report,
    gitops: Option<&str>,
) -> Vec<String> {
    let unmatched_warned = report
        .warnings()
        .any(|f| f.check == CheckId::UnmatchedSelector);
    if let (Some(tool), true) = (gitops, unmatched_warned) {
        lines.push(warning_line(
            "unmatched-selector",
            object,
            &format!(
                "{tool}-managed, so a warning, not a refusal ({tool} may apply workloads later)"
            ),
        ));
    }
    lines.extend(
        report
            .warnings()
            .map(|f| warning_line(f.check.as_str(), object, &f.summary)),
    );
    if !report.skipped.is_empty() {
        let ids: Vec<&str> = report.skipped.iter().map(|c| c.as_str()).collect();
        lines.push(warning_line(
            "skip-checks",
            object,
            &format!("not checked for {} ({SKIP_ANNOTATION})", ids.join(", ")),
        ));
    }
    for unknown in &report.unknown_skips {
        let text = match did_you_mean(unknown) {
            Some(id) => format!("unknown check {unknown:?}, ignored; did you mean {id}?"),
            None => format!("unknown check {unknown:?} in {SKIP_ANNOTATION}, ignored"),
        };
        lines.push(warning_line("skip-checks", object, &text));
    }
    if !report.unknown_skips.is_empty() {
        let ids: Vec<&str> = CheckId::ALL.iter().map(|c| c.as_str()).collect();
        lines.push(warning_line(
            "skip-checks",
            object,
            &format!("check ids: {}", ids.join(", ")),
        ));
    }
    if lines.len() > MAX_WARNINGS {
        let more = lines.len() - (MAX_WARNINGS - 1);
        lines.truncate(MAX_WARNINGS - 1);
        lines.push(warning_line(
            "palisade",
            object,
            &format!("{more} more warnings; `palisade check -f FILE` lists them all"),
        ));
    }
    lines
}

/// The check id closest to a misspelt one.
fn did_you_mean(unknown: &str) -> Option<&'static str> {
    let unknown = unknown.to_lowercase();
    if unknown.is_empty() {
        return None;
    }
    CheckId::ALL.iter().map(|c| c.as_str()).find(|id| {
        id.starts_with(&unknown)
            || unknown.starts_with(id)
            || palisade_policy::checks::distance(id, &unknown) <= 2
    })
}

/// The refusal: the first [`FULL_DENIALS`] problems in full (what, evidence, fix), the next
/// [`SHORT_DENIALS`] in one line each, and how many more there are.
pub fn refusal<'a>(object: &str, denials: impl Iterator<Item = &'a Finding>) -> String {
    refusal_of("NetworkPolicy", object, denials)
}

/// [`refusal`] of an object of another kind (a ClusterNetworkPolicy).
pub fn refusal_of<'a>(
    kind: &str,
    object: &str,
    denials: impl Iterator<Item = &'a Finding>,
) -> String {
    let denials: Vec<&Finding> = denials.collect();
    let mut m = format!("Palisade refuses {kind} {object}:\n\n");
    let full: Vec<String> = denials
        .iter()
        .take(FULL_DENIALS)
        .map(|f| format!("[{}] {}", f.check, f.message))
        .collect();
    m.push_str(&full.join("\n\n"));
    let rest = &denials[full.len()..];
    if !rest.is_empty() {
        m.push_str(&format!(
            "\n\n{} more {}:\n",
            rest.len(),
            if rest.len() == 1 {
                "problem"
            } else {
                "problems"
            }
        ));
        for f in rest.iter().take(SHORT_DENIALS) {
            m.push_str(&format!("  [{}] {}\n", f.check, f.summary));
        }
        if rest.len() > SHORT_DENIALS {
            m.push_str(&format!(
                "  ... and {} more; `palisade check -f FILE` lists them all\n",
                rest.len() - SHORT_DENIALS
            ));
        }
        m.truncate(m.trim_end().len());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_name_is_shortened_in_the_middle_and_the_evidence_kept() {
        let object = "a".repeat(80);
        let line = warning_line(
            "peer-and-or",
            &object,
            "ingress[0].from: namespaceSelector OR podSelector (2 items); AND is one item",
        );
        assert!(line.chars().count() <= HARD_LIMIT, "{line}");
        assert!(line.starts_with("[peer-and-or] aaaa"), "{line}");
        assert!(line.contains("..."), "{line}");
        assert!(line.ends_with("(2 items); AND is one item"), "{line}");
        assert_eq!(line.chars().count(), 14 + MIN_NAME + 2 + 76, "{line}");
        // A short name is kept whole (callers pass the bare name: kubectl prints the
        // namespace with the object's own line).
        let short = warning_line(
            "named-port",
            "api",
            "ingress[0]: port name http/TCP is declared by none of the selected pods",
        );
        assert_eq!(
            short,
            "[named-port] api: ingress[0]: port name http/TCP is declared by none of the selected pods"
        );
    }

    #[test]
    fn misspelt_check_ids_find_the_meant_one() {
        assert_eq!(
            did_you_mean("unmatched-selectors"),
            Some("unmatched-selector")
        );
        assert_eq!(did_you_mean("egress-DNS"), Some("egress-dns"));
        assert_eq!(did_you_mean("dns"), None);
        assert_eq!(did_you_mean(""), None);
    }
}
