//! Reading YAML streams document by document, with limits large enough for a whole cluster's
//! `kubectl get -A -o yaml`, and errors in plain words that name the file and line.

use std::io::Read;

use serde_saphyr::budget::BudgetBreach;

use super::node::Node;

/// The largest file read, in bytes. A `kubectl get pods -A -o yaml` of a 10,000-pod cluster is
/// about 100 MB.
pub const MAX_FILE_BYTES: usize = 512 * 1024 * 1024;
/// The deepest nesting of mappings and lists read (Kubernetes objects stay under 20).
pub const MAX_DEPTH: usize = 64;

/// The stack a thread reading YAML needs to reach [`MAX_DEPTH`] (the parser recurses per
/// level; a debug build's frames are large).
pub const STACK_BYTES: usize = 64 * 1024 * 1024;

/// A YAML/JSON stream that could not be read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the error was found (1-based), when the parser knows.
    pub line: Option<usize>,
    pub message: String,
    /// The stream itself failed (not its content).
    pub io: bool,
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_FILE_BYTES),
            // The file size bounds everything else; these limits exist against expansion.
            max_events: usize::MAX,
            max_nodes: usize::MAX,
            max_total_scalar_bytes: MAX_FILE_BYTES,
            max_depth: MAX_DEPTH,
        },
        // Comments are never read; not collecting them saves time on every file.
        emit_comments: false,
    }
}

/// Reads every document of a stream, handing each to `each` as soon as it is read (so a
/// multi-document file never sits in memory as a whole). Empty documents are skipped. Returns
/// how many documents were read; on an error, those before it have been handed over.
pub fn documents(mut reader: impl Read, mut each: impl FnMut(Node)) -> Result<usize, SyntaxError> {
    let mut count = 0;
    for doc in serde_saphyr::read_with_options::<_, Node>(&mut reader, options()) {
        match doc {
            Ok(node) => {
                count += 1;
                each(node);
            }
            Err(e) => return Err(syntax_error(&e)),
        }
    }
    Ok(count)
}

fn syntax_error(e: &serde_saphyr::Error) -> SyntaxError {
    let line = e.location().map(|l| l.line() as usize).filter(|&l| l > 0);
    let mut e = e;
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = e
    {
        e = error;
    }
    let io = matches!(e, serde_saphyr::Error::IOError { .. });
    let message = match e {
        serde_saphyr::Error::Budget { breach, .. } => limit(breach),
        serde_saphyr::Error::IOError { cause } => cause.to_string(),
        _ => {
            // The parser's message, without its own idea of the input's name and position
            // (the caller names the file and line).
            let text = e.to_string();
            let text = text
                .split_once(" at line ")
                .map_or(text.as_str(), |(m, _)| m)
                .to_string();
            text.replace("<input>", "the file")
        }
    };
    SyntaxError { line, message, io }
}

/// A limit the input went over, in words.
fn limit(breach: &BudgetBreach) -> String {
    match breach {
        BudgetBreach::InputBytes { .. } => format!(
            "the file is larger than {} MiB, the most palisade reads from one file; split it \
             (for example one `kubectl get` per namespace)",
            MAX_FILE_BYTES / (1024 * 1024)
        ),
        BudgetBreach::ScalarBytes { .. } => format!(
            "the file holds more than {} MiB of text values, the most palisade reads from one file; split it",
            MAX_FILE_BYTES / (1024 * 1024)
        ),
        BudgetBreach::Depth { .. } => format!(
            "mappings and lists are nested deeper than {MAX_DEPTH} levels, more than any Kubernetes object"
        ),
        BudgetBreach::Aliases { .. }
        | BudgetBreach::Anchors { .. }
        | BudgetBreach::AliasAnchorRatio { .. }
        | BudgetBreach::RecordedAnchorEvents { .. }
        | BudgetBreach::RecordedAnchorBytes { .. } => {
            "too many YAML aliases (`*name`) for the anchors (`&name`) they repeat: the file would \
             expand far beyond its size (a \"billion laughs\" file); palisade refuses it"
                .into()
        }
        other => format!("a limit on YAML input was reached ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Vec<Node>, Result<usize, SyntaxError>) {
        let mut docs = Vec::new();
        let r = documents(text.as_bytes(), |n| docs.push(n));
        (docs, r)
    }

    #[test]
    fn reads_many_documents_and_keeps_those_before_an_error() {
        let text = "a: 1\n---\n".repeat(30_000);
        let (docs, r) = read(&text);
        assert_eq!(r, Ok(30_000));
        assert_eq!(docs.len(), 30_000);

        let (docs, r) = read("a: 1\n---\nb: 2\n---\nc: [unclosed\n");
        assert_eq!(docs.len(), 2);
        let e = r.unwrap_err();
        assert_eq!(e.line, Some(5), "{e:?}");
        assert!(!e.message.contains("<input>"), "{e:?}");
    }

    #[test]
    fn an_alias_bomb_is_refused_in_words() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            text.push_str(&format!(
                "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let (_, r) = read(&text);
        let e = r.unwrap_err();
        assert!(e.message.starts_with("too many YAML aliases"), "{e:?}");
    }

    #[test]
    fn too_deep_is_named() {
        // Each level costs stack; the CLI reads on a thread with STACK_BYTES, so does this test.
        let text = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let (_, r) = std::thread::Builder::new()
            .stack_size(STACK_BYTES)
            .spawn(move || read(&text))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(
            r.unwrap_err().message,
            "mappings and lists are nested deeper than 64 levels, more than any Kubernetes object"
        );
    }
}
