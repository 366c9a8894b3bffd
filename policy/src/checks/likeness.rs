//! How a label value that matches nothing relates to a value that exists, when it looks like a
//! mistake for it: respelt (a typo: a few edits away) or decorated (the existing value with a
//! decoration users copy from other objects' names: `frontend-svc` from the Service of pods
//! labelled `app: frontend`). `unmatched-selector` offers a value only on one of these grounds.

/// Suffixes copied from the names of other objects: a Service `frontend-svc` or
/// `frontend-service`, a Deployment `api-deployment` or `api-deploy`, a Pod `db-pod`, an
/// application `shop-app`.
const SUFFIXES: [&str; 6] = ["svc", "service", "deployment", "deploy", "pod", "app"];

/// Pod labels that name the Helm release of a pod (charts name their objects `<release>-<name>`).
pub(super) const RELEASE_LABELS: [&str; 2] = ["app.kubernetes.io/instance", "release"];

/// At most this many decorations are taken off one value (`shop-frontend-svc-v2` has three).
const MOST_DECORATIONS: usize = 3;

/// Why a value that exists may be the one meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Likeness {
    /// Spelled this many edits away (0: it differs in case only).
    Respelt(usize),
    /// The wanted value is this one with these decorations added, as written: `-svc`, `-v2`,
    /// `shop-`.
    Decorated(Vec<String>),
}

impl Likeness {
    /// Lower is likelier. One decoration weighs as much as one edit, so `api-v1` is as close to
    /// `api` as to `api-v2`: the case where a person must choose.
    pub(super) fn score(&self) -> usize {
        match self {
            Likeness::Respelt(d) => *d,
            Likeness::Decorated(parts) => parts.len(),
        }
    }

    /// How the wanted value differs, in a few words: `one letter off`, `without -svc`.
    pub(super) fn describe(&self) -> String {
        match self {
            Likeness::Respelt(0) => "differs in case only".to_string(),
            Likeness::Respelt(1) => "one letter off".to_string(),
            Likeness::Respelt(d) => format!("{d} letters off"),
            Likeness::Decorated(parts) => format!("without {}", parts.join(" and ")),
        }
    }
}

/// How `wanted` (the selector's value) relates to `have` (a value in scope), when it looks like a
/// mistake for it: a close respelling, or `have` decorated. `prefixes` are the names a value may
/// start with (`<prefix>-`): the namespaces in scope and the Helm releases of the pods with
/// `have`. The likelier of the two grounds when both hold.
pub(super) fn likeness(wanted: &str, have: &str, prefixes: &[&str]) -> Option<Likeness> {
    let (w, h) = (wanted.to_lowercase(), have.to_lowercase());
    let respelt = close(&w, &h).then(|| Likeness::Respelt(distance(&w, &h)));
    let decorated = (!h.is_empty())
        .then(|| decorations(&w, &h, prefixes))
        .flatten()
        .map(Likeness::Decorated);
    respelt
        .into_iter()
        .chain(decorated)
        .min_by_key(Likeness::score)
}

/// The fewest decorations that turn `have` into `wanted` (both lowercase): trailing suffixes and
/// versions, and at most one leading prefix; `None` when there is no such way.
fn decorations(wanted: &str, have: &str, prefixes: &[&str]) -> Option<Vec<String>> {
    let plain = strip_suffixes(wanted, have);
    let prefixed = prefixes.iter().filter_map(|p| {
        let p = p.to_lowercase();
        let rest = wanted.strip_prefix(p.as_str())?.strip_prefix('-')?;
        let mut parts = strip_suffixes(rest, have).unwrap_or_default();
        if rest != have && parts.is_empty() {
            return None;
        }
        parts.push(format!("{p}-"));
        Some(parts)
    });
    plain
        .into_iter()
        .chain(prefixed)
        .filter(|parts| !parts.is_empty() && parts.len() <= MOST_DECORATIONS)
        .min_by_key(Vec::len)
}

/// The trailing decorations (`-svc`, `-v2`) that, taken off `value` one by one, leave `have`;
/// `None` when that never happens.
fn strip_suffixes(value: &str, have: &str) -> Option<Vec<String>> {
    let mut removed = Vec::new();
    let mut rest = value;
    while rest != have {
        let (stem, tail) = rest.rsplit_once('-')?;
        if stem.is_empty() || !is_suffix(tail) || removed.len() == MOST_DECORATIONS {
            return None;
        }
        removed.push(format!("-{tail}"));
        rest = stem;
    }
    (!removed.is_empty()).then_some(removed)
}

/// One of `SUFFIXES`, or a version: `v` and a number, dotted parts allowed (`v1`, `v12`, `v1.2`).
fn is_suffix(tail: &str) -> bool {
    if SUFFIXES.contains(&tail) {
        return true;
    }
    tail.strip_prefix('v').is_some_and(|n| {
        n.split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Whether `have` is spelled close enough to `wanted` to be offered as what was meant: the same
/// but for case, one edit (3 characters or more), or two edits in a long value.
pub(super) fn close(have: &str, wanted: &str) -> bool {
    let (a, b) = (have.to_lowercase(), wanted.to_lowercase());
    let longest = a.chars().count().max(b.chars().count());
    match distance(&a, &b) {
        0 => true,
        1 => longest >= 3,
        2 => longest >= 8,
        _ => false,
    }
}

/// Levenshtein distance, for "did you mean".
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decorated(parts: &[&str]) -> Option<Likeness> {
        Some(Likeness::Decorated(
            parts.iter().map(ToString::to_string).collect(),
        ))
    }

    #[test]
    fn decorations_users_copy_are_recognised() {
        let prefixes = ["production", "shop"];
        let table: [(&str, &str, Option<Likeness>); 16] = [
            ("frontend-svc", "frontend", decorated(&["-svc"])),
            ("frontend-service", "frontend", decorated(&["-service"])),
            ("api-deployment", "api", decorated(&["-deployment"])),
            ("api-deploy", "api", decorated(&["-deploy"])),
            ("db-pod", "db", decorated(&["-pod"])),
            ("cart-app", "cart", decorated(&["-app"])),
            ("api-v1", "api", decorated(&["-v1"])),
            ("api-v12", "api", decorated(&["-v12"])),
            ("api-v1.2", "api", decorated(&["-v1.2"])),
            ("Frontend-SVC", "frontend", decorated(&["-svc"])),
            ("production-api", "api", decorated(&["production-"])),
            (
                "shop-frontend-svc",
                "frontend",
                decorated(&["-svc", "shop-"]),
            ),
            ("frontend-svc-v2", "frontend", decorated(&["-v2", "-svc"])),
            // Not decorations: another word, a version without its `v`, a bare suffix.
            ("invoicing-legacy", "invoicing", None),
            ("api-2", "api", None),
            ("svc", "frontend", None),
        ];
        for (wanted, have, expected) in table {
            assert_eq!(
                likeness(wanted, have, &prefixes),
                expected,
                "{wanted} -> {have}"
            );
        }
    }

    #[test]
    fn a_prefix_counts_only_when_it_names_a_namespace_or_release() {
        assert_eq!(likeness("billing-api", "api", &["production"]), None);
        assert_eq!(
            likeness("billing-api", "api", &["billing"]),
            decorated(&["billing-"])
        );
        // The prefix alone, or a prefix without its dash, is no decoration.
        assert_eq!(likeness("production", "", &["production"]), None);
        assert_eq!(likeness("productionapi", "api", &["production"]), None);
    }

    #[test]
    fn respellings_keep_their_cutoff() {
        assert_eq!(
            likeness("fronted", "frontend", &[]),
            Some(Likeness::Respelt(1))
        );
        assert_eq!(likeness("gatway", "cart", &[]), None);
        assert_eq!(likeness("backend", "api", &[]), None);
        assert_eq!(likeness("db", "dc", &[]), None);
        // Another version is a respelling, not a decoration.
        assert_eq!(
            likeness("api-v1", "api-v2", &[]),
            Some(Likeness::Respelt(1))
        );
    }

    #[test]
    fn too_many_decorations_are_not_a_likeness() {
        assert_eq!(likeness("shop-api-app-svc-v1-v2", "api", &["shop"]), None);
    }
}
