//! A minimal HTTPS admission webhook for proving the apiserver -> webhook -> kubectl path before
//! Palisade's own webhook takes it: AdmissionReview v1 in, a fixed decision out.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;
use crate::background::Background;

/// Decides a review: `None` allows, `Some(message)` denies with that message.
pub type Decide = fn(&serde_json::Value) -> Option<String>;

pub struct AdmissionStub {
    pub addr: SocketAddr,
    /// Stopped when dropped.
    _thread: Background,
}

impl AdmissionStub {
    pub fn start(cert: &Path, key: &Path, decide: Decide) -> Result<Self, Error> {
        let tls = |m: String| Error::Command {
            what: "admission stub TLS setup".into(),
            stderr: m,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| tls(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| tls(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls(e.to_string()))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls(e.to_string()))?;
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Io {
            what: "binding the admission stub".into(),
            source,
        })?;
        listener.set_nonblocking(true).map_err(|source| Error::Io {
            what: "configuring the admission stub".into(),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| Error::Io {
            what: "admission stub address".into(),
            source,
        })?;
        let thread = Background::spawn(move |flag| {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let (config, flag) = (config.clone(), flag.clone());
                        std::thread::spawn(move || {
                            let _ = tcp.set_nonblocking(false);
                            // Short reads, so an idle kept-alive connection notices the stop.
                            let _ = tcp.set_read_timeout(Some(Duration::from_millis(100)));
                            if let Ok(conn) = rustls::ServerConnection::new(config) {
                                let _ = serve(rustls::StreamOwned::new(conn, tcp), decide, &flag);
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Self {
            addr,
            _thread: thread,
        })
    }
}

/// Serves HTTP/1.1 requests on one connection until it closes or the stub stops.
fn serve<S: Read + Write>(stream: S, decide: Decide, stop: &AtomicBool) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(()); // closing the connection: the apiserver sees the webhook gone
            }
            match reader.read_line(&mut line) {
                Ok(0) => return Ok(()),
                Ok(_) => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length.min(16 << 20)];
        reader.read_exact(&mut body)?;
        if stop.load(Ordering::Relaxed) {
            return Ok(()); // stopped while the request was arriving: no answer
        }
        let review: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let uid = review["request"]["uid"].clone();
        let response = match decide(&review) {
            None => serde_json::json!({"uid": uid, "allowed": true}),
            Some(message) => {
                serde_json::json!({"uid": uid, "allowed": false, "status": {"code": 403, "message": message}})
            }
        };
        let out = serde_json::to_vec(&serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response
        }))?;
        let stream = reader.get_mut();
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            out.len()
        )?;
        stream.write_all(&out)?;
        stream.flush()?;
    }
}
