//! The enforcer's unix socket for the CNI plugin: one JSON request line in, one reply line out
//! per connection ([`palisade_cni::protocol`]).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_cni::protocol::{MAX_LINE, Reply, Request, decode, encode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::FirstPacket;

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {}: {source}", .path.display())]
pub struct ListenError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Binds `path` (replacing a socket a previous enforcer left), readable and writable by root
/// only: the container runtime runs the plugin as root.
pub fn listen(path: &Path) -> Result<UnixListener, ListenError> {
    let error = |source| ListenError {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(error)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(error(e)),
    }
    let listener = UnixListener::bind(path).map_err(error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(error)?;
    Ok(listener)
}

/// Answers the plugin until `stop` resolves, then removes the socket (a plugin finds nothing
/// listening and fails closed at once, instead of waiting for its timeout).
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    first_packet: FirstPacket,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let fp = first_packet.clone();
                    tokio::spawn(async move { answer(stream, fp).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a CNI plugin connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = &mut stop => break,
        }
    }
    let _ = std::fs::remove_file(&path);
}

async fn answer(stream: UnixStream, first_packet: FirstPacket) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_LINE));
    let reply = match tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(Ok(_)) => match decode::<Request>(&line) {
            Ok(request) => {
                let started = std::time::Instant::now();
                let what = describe(&request);
                let reply = first_packet.handle(request).await;
                match &reply {
                    Reply::Ready { isolated } => tracing::debug!(
                        request = %what,
                        isolated,
                        took_ms = started.elapsed().as_millis() as u64,
                        "CNI plugin answered"
                    ),
                    Reply::Refused { reason } => tracing::warn!(
                        request = %what,
                        reason = %reason,
                        "CNI plugin refused: the pod stays without network (fail closed)"
                    ),
                }
                reply
            }
            Err(e) => Reply::Refused {
                reason: format!("the enforcer could not read the request: {e}"),
            },
        },
        Ok(Err(e)) => Reply::Refused {
            reason: format!("the enforcer could not read the request: {e}"),
        },
        Err(_) => return,
    };
    let _ = write.write_all(encode(&reply).as_bytes()).await;
}

fn describe(request: &Request) -> String {
    match request {
        Request::Add { pod, ips, .. } => {
            let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
            format!("ADD {pod} {}", ips.join(","))
        }
        Request::Del { pod, .. } => format!("DEL {pod}"),
    }
}
