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

/// Text read per parsing thread at a time: the memory of parsed documents stays a few times
/// this per thread, whatever the file's size.
const CHUNK_BYTES: usize = 1 << 20;

/// Reads every document of a stream, handing each to `each` in order, a few chunks at a time (so
/// a multi-document file never sits in memory as parsed documents as a whole). Chunks of
/// documents are parsed on parallel threads. Empty documents are skipped. Returns how many
/// documents were read; on an error, those before it have been handed over.
pub fn documents(reader: impl Read, each: impl FnMut(Node)) -> Result<usize, SyntaxError> {
    documents_in_chunks(reader, CHUNK_BYTES, each)
}

fn documents_in_chunks(
    reader: impl Read,
    chunk_bytes: usize,
    mut each: impl FnMut(Node),
) -> Result<usize, SyntaxError> {
    let text = read_text(reader)?;
    let chunks = chunks(&text, chunk_bytes);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let mut count = 0;
    for round in chunks.chunks(threads) {
        let parsed: Vec<(Vec<Node>, Option<SyntaxError>)> = if round.len() == 1 {
            vec![parse_chunk(round[0])]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = round
                    .iter()
                    .map(|&chunk| {
                        std::thread::Builder::new()
                            .stack_size(STACK_BYTES)
                            .spawn_scoped(scope, move || parse_chunk(chunk))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| match h {
                        Ok(h) => h.join().unwrap_or_else(|_| {
                            (Vec::new(), Some(failure("the YAML parser failed")))
                        }),
                        Err(e) => (Vec::new(), Some(failure(&e.to_string()))),
                    })
                    .collect()
            })
        };
        for (docs, error) in parsed {
            count += docs.len();
            docs.into_iter().for_each(&mut each);
            if let Some(e) = error {
                return Err(e);
            }
        }
    }
    Ok(count)
}

fn failure(message: &str) -> SyntaxError {
    SyntaxError {
        line: None,
        message: message.into(),
        io: true,
    }
}

/// The whole stream as text, at most [`MAX_FILE_BYTES`].
fn read_text(reader: impl Read) -> Result<String, SyntaxError> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| failure(&e.to_string()))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(SyntaxError {
            line: None,
            message: limit(&BudgetBreach::InputBytes {
                input_bytes: bytes.len(),
            }),
            io: false,
        });
    }
    String::from_utf8(bytes).map_err(|e| SyntaxError {
        line: None,
        message: format!("not UTF-8 text ({e})"),
        io: false,
    })
}

/// A piece of the stream that starts at a document boundary, and the line it starts at.
#[derive(Clone, Copy)]
struct Chunk<'a> {
    text: &'a str,
    first_line: usize,
}

/// Cuts the stream at document starts (`---` at the start of a line, which YAML never allows
/// inside a document) into pieces of about `size` bytes. A stream with directives (`%YAML`)
/// stays whole.
fn chunks(text: &str, size: usize) -> Vec<Chunk<'_>> {
    let whole = vec![Chunk {
        text,
        first_line: 1,
    }];
    if text.len() <= size || text.lines().any(|l| l.starts_with('%')) {
        return whole;
    }
    let mut out = Vec::new();
    let (mut start, mut start_line, mut offset) = (0, 1, 0);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let boundary =
            line.starts_with("---") && line[3..].chars().next().is_none_or(char::is_whitespace);
        if boundary && offset - start >= size {
            out.push(Chunk {
                text: &text[start..offset],
                first_line: start_line,
            });
            start = offset;
            start_line = i + 1;
        }
        offset += line.len();
    }
    out.push(Chunk {
        text: &text[start..],
        first_line: start_line,
    });
    out
}

/// Parses one chunk: its documents, with lines counted from the start of the stream, and the
/// error that stopped it, if any.
fn parse_chunk(chunk: Chunk) -> (Vec<Node>, Option<SyntaxError>) {
    let shift = chunk.first_line - 1;
    let mut docs = Vec::new();
    let mut reader = chunk.text.as_bytes();
    for doc in serde_saphyr::read_with_options::<_, Node>(&mut reader, options()) {
        match doc {
            Ok(mut node) => {
                if shift > 0 {
                    node.shift_lines(shift);
                }
                docs.push(node);
            }
            Err(e) => {
                let mut e = syntax_error(&e);
                e.line = e.line.map(|l| l + shift);
                return (docs, Some(e));
            }
        }
    }
    (docs, None)
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
    fn a_stream_cut_into_chunks_reads_as_one_with_its_lines() {
        // Over two chunks of documents, with a block scalar holding `---` indented (content).
        const SIZE: usize = 4096;
        let read = |text: &str| {
            let mut docs = Vec::new();
            let r = documents_in_chunks(text.as_bytes(), SIZE, |n| docs.push(n));
            (docs, r)
        };
        let doc = "kind: ConfigMap\ndata:\n  x: |\n    ---\n    text\n";
        let text = format!("{doc}---\n").repeat(SIZE / doc.len() * 30);
        assert!(chunks(&text, SIZE).len() >= 20);
        let (docs, r) = read(&text);
        assert_eq!(r, Ok(docs.len()));
        assert_eq!(docs.len(), SIZE / doc.len() * 30);
        // Every document starts 6 lines after the one before it.
        assert!(docs.iter().enumerate().all(|(i, d)| d.line == 1 + 6 * i));
        assert_eq!(docs[1000].locate("data.x").as_str(), Some("---\ntext\n"));

        // An error in a later chunk is reported at its line in the whole stream.
        let broken = format!("{text}kind: [unclosed\n");
        let lines = broken.lines().count();
        let (docs, r) = read(&broken);
        assert_eq!(docs.len(), SIZE / doc.len() * 30);
        assert_eq!(r.unwrap_err().line, Some(lines));
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
