//! Asking the enforcer over its unix socket: connect, one request line, one reply line, all
//! within the timeout.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::plugin::{Ask, AskError};
use crate::protocol::{MAX_LINE, Reply, Request, decode, encode};

/// The enforcer behind its socket.
pub struct Socket;

impl Ask for Socket {
    fn ask(&self, socket: &Path, request: &Request, timeout: Duration) -> Result<Reply, AskError> {
        let started = Instant::now();
        let stream =
            UnixStream::connect(socket).map_err(|e| AskError::NotAnswering(e.to_string()))?;
        let left = |started: Instant| {
            timeout
                .checked_sub(started.elapsed())
                .filter(|d| !d.is_zero())
                .ok_or(AskError::Timeout)
        };
        let timed_out = |e: std::io::Error| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => AskError::Timeout,
            _ => AskError::Garbled(e.to_string()),
        };
        stream
            .set_write_timeout(Some(left(started)?))
            .map_err(|e| AskError::Garbled(e.to_string()))?;
        (&stream)
            .write_all(encode(request).as_bytes())
            .map_err(timed_out)?;
        stream
            .set_read_timeout(Some(left(started)?))
            .map_err(|e| AskError::Garbled(e.to_string()))?;
        let mut line = String::new();
        BufReader::new((&stream).take(MAX_LINE))
            .read_line(&mut line)
            .map_err(timed_out)?;
        if line.is_empty() {
            return Err(AskError::Garbled(
                "the connection closed without an answer".into(),
            ));
        }
        decode(&line).map_err(|e| AskError::Garbled(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;
    use crate::protocol::PodRef;

    fn request() -> Request {
        Request::Del {
            pod: PodRef {
                namespace: "a".into(),
                name: "b".into(),
                uid: None,
            },
            container_id: "c".into(),
        }
    }

    fn socket_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("palisade-cni-{}-{name}.sock", std::process::id()))
    }

    #[test]
    fn nobody_listening_is_not_answering() {
        let path = socket_path("none");
        let e = Socket
            .ask(&path, &request(), Duration::from_secs(1))
            .unwrap_err();
        assert!(matches!(e, AskError::NotAnswering(_)), "{e:?}");
    }

    #[test]
    fn an_answer_a_silence_and_a_hang_up() {
        for (name, answer, expect) in [
            (
                "ready",
                Some("{\"result\":\"ready\",\"isolated\":true}\n"),
                Ok(Reply::Ready { isolated: true }),
            ),
            ("silent", None, Err(AskError::Timeout)),
            (
                "hangup",
                Some(""),
                Err(AskError::Garbled(
                    "the connection closed without an answer".into(),
                )),
            ),
        ] {
            let path = socket_path(name);
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).unwrap();
            let server = std::thread::spawn(move || {
                let (mut conn, _) = listener.accept().unwrap();
                let mut line = String::new();
                BufReader::new(&conn).read_line(&mut line).unwrap();
                assert!(line.starts_with("{\"command\":\"del\""), "{line}");
                match answer {
                    Some(a) => conn.write_all(a.as_bytes()).unwrap(),
                    None => std::thread::sleep(Duration::from_millis(600)),
                }
            });
            let got = Socket.ask(&path, &request(), Duration::from_millis(300));
            assert_eq!(got, expect, "{name}");
            server.join().unwrap();
            let _ = std::fs::remove_file(&path);
        }
    }
}
