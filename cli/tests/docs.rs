//! README.md and docs/*.md as a reader follows them: every relative link leads to a file that
//! exists, and every `#anchor` to a heading of that file (GitHub's slugs); every flag shown in
//! a `palisade SUBCOMMAND ... --flag` command (in code blocks and inline code) is one that
//! subcommand's `--help` lists, asked of the built binary.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace's root, where README.md is.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds the crate")
        .to_path_buf()
}

/// README.md and every docs/*.md, sorted.
fn markdown_files() -> Vec<PathBuf> {
    let root = root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("a readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines of a Markdown text, each with its number (from 1) and whether it is inside a
/// fenced code block (the fence lines themselves count as inside).
fn lines(text: &str) -> Vec<(usize, &str, bool)> {
    let mut fenced = false;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let fence = line.trim_start().starts_with("```");
            if fence {
                fenced = !fenced;
            }
            (i + 1, line, fenced || fence)
        })
        .collect()
}

/// A line's inline code spans, and the line with them taken out.
fn code_spans(line: &str) -> (Vec<&str>, String) {
    let mut spans = Vec::new();
    let mut prose = String::new();
    let mut rest = line;
    while let Some(open) = rest.find('`') {
        prose.push_str(&rest[..open]);
        let ticks = rest[open..].chars().take_while(|&c| c == '`').count();
        let after = &rest[open + ticks..];
        let delimiter = "`".repeat(ticks);
        match after.find(&delimiter) {
            Some(close) => {
                spans.push(&after[..close]);
                rest = &after[close + ticks..];
            }
            None => {
                rest = after;
            }
        }
    }
    prose.push_str(rest);
    (spans, prose)
}

/// GitHub's anchor for a heading: lower case, inline markup and punctuation dropped (letters,
/// digits, `-` and `_` stay), spaces made `-`.
fn slug(heading: &str) -> String {
    // A link in a heading is anchored by its text.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after
            .find("](")
            .and_then(|mid| after[mid..].find(')').map(|close| (mid, mid + close + 1)))
        {
            Some((mid, end)) => {
                text.push_str(&after[..mid]);
                rest = &after[end..];
            }
            None => {
                text.push('[');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown text's headings; a repeated one gets `-1`, `-2`, ... as on GitHub.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line, fenced) in lines(text) {
        if fenced {
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let s = slug(&line[hashes + 1..]);
        let n = seen.entry(s.clone()).or_insert(0);
        out.insert(if *n == 0 {
            s.clone()
        } else {
            format!("{s}-{n}")
        });
        *n += 1;
    }
    out
}

/// The targets of the inline links and images of a Markdown text outside code, with their lines.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (number, line, fenced) in lines(text) {
        if fenced {
            continue;
        }
        let (_, prose) = code_spans(line);
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(close) = after.find(')') else {
                break;
            };
            // `[text](target "title")`: the target is the first word.
            let target = after[..close].split_whitespace().next().unwrap_or_default();
            out.push((number, target.to_string()));
            rest = &after[close..];
        }
    }
    out
}

/// What is wrong with the links of `file` (whose text is `text`), one line each; `read` gives
/// the text of another Markdown file a link points into.
fn broken_links(file: &Path, text: &str, read: &dyn Fn(&Path) -> Option<String>) -> Vec<String> {
    let dir = file.parent().expect("a file is in a directory");
    let mut problems = Vec::new();
    for (line, target) in links(text) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (target.as_str(), None),
        };
        let place = format!("{}:{line}: ({target})", file.display());
        let linked = if path.is_empty() {
            file.to_path_buf()
        } else {
            dir.join(path)
        };
        let Some(anchor) = anchor else {
            if !linked.exists() {
                problems.push(format!("{place}: {} does not exist", linked.display()));
            }
            continue;
        };
        let linked_text = if path.is_empty() {
            Some(text.to_string())
        } else {
            read(&linked)
        };
        match linked_text {
            None => problems.push(format!("{place}: {} does not exist", linked.display())),
            Some(t) if !anchors(&t).contains(anchor) => problems.push(format!(
                "{place}: {} has no heading with the anchor #{anchor}",
                linked.display()
            )),
            Some(_) => {}
        }
    }
    problems
}

/// Every `palisade SUBCOMMAND args...` of a Markdown text, in code blocks and inline code: the
/// line, the subcommand and its flags (`--name` and `-x`, without `=value`). A command ends at
/// a comment, a pipe, `;` or `&&`.
fn commands(text: &str, subcommands: &BTreeSet<String>) -> Vec<(usize, String, Vec<String>)> {
    let mut out = Vec::new();
    for (number, line, fenced) in lines(text) {
        let (spans, _) = code_spans(line);
        let pieces: Vec<&str> = if fenced { vec![line] } else { spans };
        for piece in pieces {
            let words: Vec<&str> = piece.split_whitespace().collect();
            for (i, word) in words.iter().enumerate() {
                if *word != "palisade" {
                    continue;
                }
                let Some(sub) = words.get(i + 1).filter(|s| subcommands.contains(**s)) else {
                    continue;
                };
                let mut flags = Vec::new();
                for arg in &words[i + 2..] {
                    if arg.starts_with('#') || matches!(*arg, "|" | ";" | "&&" | "||") {
                        break;
                    }
                    let arg = arg.trim_start_matches(['[', '(']);
                    let arg = arg.trim_end_matches([']', ')', ',', '.', ';']);
                    let is_flag = arg.starts_with('-')
                        && arg
                            .trim_start_matches('-')
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_alphabetic());
                    if is_flag {
                        flags.push(arg.split('=').next().unwrap_or(arg).to_string());
                    }
                }
                out.push((number, sub.to_string(), flags));
            }
        }
    }
    out
}

/// Whether `help` (a subcommand's `--help`) lists `flag`.
fn lists(help: &str, flag: &str) -> bool {
    help.lines().any(|l| {
        l.trim_start()
            .split([',', ' ', '='])
            .filter(|w| !w.is_empty())
            .take_while(|w| w.starts_with('-'))
            .any(|w| w == flag)
    })
}

/// What `palisade ARGS` prints (help, here), which must succeed.
fn palisade(args: &[&str]) -> String {
    let out = common::palisade(args);
    assert!(out.status.success(), "palisade {args:?}: {out:?}");
    common::stdout(&out)
}

/// The subcommands `palisade --help` lists.
fn subcommands() -> BTreeSet<String> {
    let help = palisade(&["--help"]);
    let listed: BTreeSet<String> = help
        .lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(
        listed.contains("check") && listed.contains("reach"),
        "{help}"
    );
    listed
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let files = markdown_files();
    assert!(files.len() > 5, "README.md and docs/*.md: {files:?}");
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = read(file);
        checked += links(&text).len();
        problems.extend(broken_links(file, &text, &|p| {
            std::fs::read_to_string(p).ok()
        }));
    }
    assert!(
        checked > 30,
        "only {checked} links found: is the parser reading them?"
    );
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_documented_palisade_flag_is_in_its_help() {
    let subcommands = subcommands();
    let mut help: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut flags_checked = 0;
    for file in markdown_files() {
        for (line, sub, flags) in commands(&read(&file), &subcommands) {
            let text = help
                .entry(sub.clone())
                .or_insert_with(|| palisade(&[sub.as_str(), "--help"]));
            for flag in flags {
                flags_checked += 1;
                if !lists(text, &flag) {
                    problems.push(format!(
                        "{}:{line}: palisade {sub} {flag}: not in `palisade {sub} --help`",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(
        flags_checked > 20,
        "only {flags_checked} flags found: is the parser reading the commands?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checks above fail on a real break: a link to a missing file, to a missing heading, and
/// a flag no subcommand has.
#[test]
fn the_checks_catch_a_broken_link_an_unknown_anchor_and_an_unknown_flag() {
    let docs = root().join("docs");
    let text = "# Title\n\n## `palisade status`: is it enforced?\n\n\
                [ok](#palisade-status-is-it-enforced) [ok](../README.md) [gone](missing.md) \
                [wrong](#palisade-status) `[not a link](nowhere.md)`\n\n\
                ```sh\npalisade reach -f x.yaml --explian   # a typo\n```\n";
    let problems = broken_links(&docs.join("x.md"), text, &|_| None);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].ends_with("missing.md does not exist"),
        "{problems:?}"
    );
    assert!(
        problems[1].ends_with("has no heading with the anchor #palisade-status"),
        "{problems:?}"
    );

    let subcommands = subcommands();
    let found = commands(text, &subcommands);
    assert_eq!(
        found,
        [
            (3, "status".to_string(), vec![]),
            (
                8,
                "reach".to_string(),
                vec!["-f".to_string(), "--explian".to_string()]
            )
        ]
    );
    let help = palisade(&["reach", "--help"]);
    assert!(
        lists(&help, "--explain") && lists(&help, "-f") && lists(&help, "--help"),
        "{help}"
    );
    assert!(!lists(&help, "--explian"), "{help}");
}

#[test]
fn anchors_follow_githubs_slugs() {
    let text = "# Palisade\n## What `kubectl apply` users see: the checks\n\
                ## NetworkBaseline or ClusterNetworkPolicy?\n## Installing the CRD: `clusterNetworkPolicy.installCRDs`\n\
                ## Repeated\n## Repeated\n```sh\n# not a heading\n```\n";
    let got = anchors(text);
    let want: BTreeSet<String> = [
        "palisade",
        "what-kubectl-apply-users-see-the-checks",
        "networkbaseline-or-clusternetworkpolicy",
        "installing-the-crd-clusternetworkpolicyinstallcrds",
        "repeated",
        "repeated-1",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(got, want);
}

/// A docs page no link leads to is one nobody finds: each is linked from README.md or from a
/// page that is.
#[test]
fn every_docs_page_is_reachable_from_the_readme() {
    let root = root();
    let readme = root.join("README.md");
    let mut reached = BTreeSet::from([readme.clone()]);
    let mut todo = vec![readme];
    while let Some(file) = todo.pop() {
        let dir = file
            .parent()
            .expect("a file is in a directory")
            .to_path_buf();
        for (_, target) in links(&read(&file)) {
            let path = target.split('#').next().unwrap_or_default();
            if path.is_empty() || target.contains("://") || !path.ends_with(".md") {
                continue;
            }
            let Ok(linked) = dir.join(path).canonicalize() else {
                continue; // a broken link: the link test names it
            };
            if reached.insert(linked.clone()) {
                todo.push(linked);
            }
        }
    }
    let reached: BTreeSet<PathBuf> = reached
        .into_iter()
        .map(|p| p.canonicalize().unwrap_or(p))
        .collect();
    let unreached: Vec<String> = markdown_files()
        .into_iter()
        .filter(|f| !reached.contains(&f.canonicalize().unwrap_or_else(|_| f.clone())))
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        unreached.is_empty(),
        "no link from README.md leads to: {unreached:?}"
    );
}
