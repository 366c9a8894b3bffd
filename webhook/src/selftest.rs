//! `palisade-webhook selftest`: what the chart's `helm test` runs. Posts an AdmissionReview of
//! an egress lockdown that forgets DNS to the webhook's Service over TLS, checks the serving
//! certificate against the webhook's CA bundle and the Service's DNS name, and prints the answer. From
//! the Palisade image itself, so `helm test` needs no other image (air-gapped clusters).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

#[derive(Debug, clap::Parser)]
#[command(
    name = "palisade-webhook selftest",
    about = "Ask the webhook to review a policy over TLS, as the apiserver does (the chart's helm test)"
)]
pub struct SelftestArgs {
    /// Where the webhook listens, HOST:PORT (e.g. the Service's ClusterIP and port).
    #[arg(long)]
    pub address: String,
    /// The name its certificate must be valid for (the Service's DNS name).
    #[arg(long)]
    pub server_name: String,
    /// The CAs that may have signed the webhook's certificate (PEM; e.g. `ca.crt` of its Secret).
    #[arg(long)]
    pub ca: PathBuf,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 10)]
    pub timeout_seconds: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SelftestError {
    #[error("reading the CA {0}: {1}")]
    Ca(PathBuf, String),
    #[error("{0} is not a valid server name")]
    ServerName(String),
    #[error("cannot reach the webhook at {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS with the webhook at {0}: {1}")]
    Tls(String, String),
    #[error("the webhook answered HTTP {status}: {body}")]
    Status { status: String, body: String },
    #[error("the webhook's answer is not the AdmissionReview asked for: {0}")]
    Answer(String),
}

const REVIEW: &str = r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
 "request": {"uid": "palisade-selftest", "operation": "CREATE", "namespace": "default", "name": "selftest",
  "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"},
  "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "networkpolicies"},
  "userInfo": {"username": "palisade-selftest"},
  "object": {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
   "metadata": {"name": "selftest", "namespace": "default"},
   "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}}}"#;

/// Runs the self-test; the webhook's verdict, one line, when it answered properly.
pub fn run(args: &SelftestArgs) -> Result<String, SelftestError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&args.ca)
        .map_err(|e| SelftestError::Ca(args.ca.clone(), e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| SelftestError::Ca(args.ca.clone(), e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| SelftestError::Ca(args.ca.clone(), e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(args.server_name.clone())
        .map_err(|_| SelftestError::ServerName(args.server_name.clone()))?;
    let tls = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| SelftestError::Tls(args.address.clone(), e.to_string()))?;
    let timeout = Duration::from_secs(args.timeout_seconds.max(1));
    let addr = args
        .address
        .to_socket_addrs()
        .map_err(|e| SelftestError::Connect(args.address.clone(), e))?
        .next()
        .ok_or_else(|| {
            SelftestError::Connect(
                args.address.clone(),
                std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
            )
        })?;
    let tcp = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| SelftestError::Connect(args.address.clone(), e))?;
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    let mut stream = rustls::StreamOwned::new(tls, tcp);
    let request = format!(
        "POST /validate HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{REVIEW}",
        args.server_name,
        REVIEW.len()
    );
    let tls_error = |e: std::io::Error| SelftestError::Tls(args.address.clone(), e.to_string());
    stream.write_all(request.as_bytes()).map_err(tls_error)?;
    let mut response = Vec::new();
    // A peer closing without close_notify after a complete answer is fine here.
    if let Err(e) = stream.read_to_end(&mut response)
        && response.is_empty()
    {
        return Err(tls_error(e));
    }
    judge(&String::from_utf8_lossy(&response))
}

/// Reads an HTTP/1.1 response to the review: the verdict, or why it is not an answer.
pub fn judge(response: &str) -> Result<String, SelftestError> {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("").to_string();
    // The server may answer chunked; the JSON object spans from the first brace to the last.
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if a < b => &body[a..=b],
        _ => body,
    };
    if status != "200" {
        return Err(SelftestError::Status {
            status,
            body: json.chars().take(300).collect(),
        });
    }
    let review: serde_json::Value =
        serde_json::from_str(json).map_err(|e| SelftestError::Answer(e.to_string()))?;
    let answer = &review["response"];
    if answer["uid"] != "palisade-selftest" {
        return Err(SelftestError::Answer(format!(
            "uid {} instead of palisade-selftest",
            answer["uid"]
        )));
    }
    let verdict = if answer["allowed"] == true {
        "allowed".to_string()
    } else {
        format!(
            "refused: {}",
            answer["status"]["message"]
                .as_str()
                .unwrap_or("(no message)")
        )
    };
    Ok(format!(
        "the webhook answered over TLS, as {}: an egress lockdown without DNS was {verdict}",
        review["apiVersion"].as_str().unwrap_or("?")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: &str, body: &str) -> String {
        format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\r\n{body}")
    }

    #[test]
    fn a_refusal_is_reported_with_its_message() {
        let body = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"palisade-selftest","allowed":false,"status":{"code":403,"message":"Palisade refuses NetworkPolicy default/selftest"}}}"#;
        assert_eq!(
            judge(&answer("200 OK", body)).unwrap(),
            "the webhook answered over TLS, as admission.k8s.io/v1: an egress lockdown without DNS was refused: Palisade refuses NetworkPolicy default/selftest"
        );
    }

    #[test]
    fn a_chunked_answer_is_read() {
        let body = "7a\r\n{\"apiVersion\":\"admission.k8s.io/v1\",\"response\":{\"uid\":\"palisade-selftest\",\"allowed\":true}}\r\n0\r\n\r\n";
        assert!(
            judge(&answer("200 OK", body))
                .unwrap()
                .ends_with("was allowed")
        );
    }

    #[test]
    fn another_uid_or_status_is_not_an_answer() {
        let other = r#"{"response":{"uid":"someone-else","allowed":true}}"#;
        assert_eq!(
            judge(&answer("200 OK", other)).unwrap_err().to_string(),
            "the webhook's answer is not the AdmissionReview asked for: uid \"someone-else\" instead of palisade-selftest"
        );
        assert_eq!(
            judge(&answer(
                "400 Bad Request",
                "not an AdmissionReview: missing field `request`"
            ))
            .unwrap_err()
            .to_string(),
            "the webhook answered HTTP 400: not an AdmissionReview: missing field `request`"
        );
        assert!(matches!(
            judge(&answer("200 OK", "{ no json")),
            Err(SelftestError::Answer(_))
        ));
    }
}
