//! Certificates as the planner sees them: parsed from PEM (what it needs of each: fingerprint,
//! validity, SANs, whether it is a CA, who signed it), and new ones generated with rcgen
//! (ECDSA P-256).

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Certificates we issue start this long before they are issued, so a node whose clock runs a
/// little behind the issuing replica's still accepts them. Their lifetime is counted from the
/// issue time (`not_before + BACKDATE`).
pub const BACKDATE: i64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("a time out of range: {0}")]
    Time(i64),
    #[error("no signing CA to sign the serving certificate with")]
    NoSigner,
}

/// One certificate, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    pub der: Vec<u8>,
    /// SHA-256 of the DER, hex: how certificates are told apart.
    pub fingerprint: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
    /// DNS names and IP addresses, as text, sorted.
    pub sans: Vec<String>,
    pub subject: String,
}

impl Cert {
    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, x509) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let mut sans: Vec<String> = match x509.subject_alternative_name() {
            Ok(Some(ext)) => ext
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    GeneralName::IPAddress(b) => ip_from_bytes(b).map(|ip| ip.to_string()),
                    _ => None,
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => return Err(format!("its subjectAltName: {e}")),
        };
        sans.sort();
        Ok(Self {
            der: der.to_vec(),
            fingerprint: fingerprint(der),
            not_before: x509.validity().not_before.timestamp(),
            not_after: x509.validity().not_after.timestamp(),
            is_ca: x509.is_ca(),
            sans,
            subject: x509.subject().to_string(),
        })
    }

    pub fn pem(&self) -> String {
        pem("CERTIFICATE", &self.der)
    }

    /// When it was issued, for certificates we issue (see [`BACKDATE`]).
    pub fn issued(&self) -> i64 {
        (self.not_before + BACKDATE).min(self.not_after)
    }

    /// Seconds of validity left at `now` (negative once expired).
    pub fn remaining(&self, now: i64) -> i64 {
        self.not_after - now
    }

    /// Whether less than a third of its lifetime is left at `now`.
    pub fn due(&self, now: i64) -> bool {
        let lifetime = (self.not_after - self.issued()).max(1);
        3 * self.remaining(now) < lifetime
    }

    pub fn expired(&self, now: i64) -> bool {
        self.not_after <= now
    }

    /// Whether `issuer`'s key signed this certificate.
    pub fn signed_by(&self, issuer: &Cert) -> bool {
        let (Ok((_, me)), Ok((_, ca))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&issuer.der),
        ) else {
            return false;
        };
        me.verify_signature(Some(ca.public_key())).is_ok()
    }

    /// Whether `key` (PEM) is this certificate's private key.
    pub fn matches_key(&self, key: &KeyPair) -> bool {
        X509Certificate::from_der(&self.der)
            .map(|(_, c)| c.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
            .unwrap_or(false)
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// PEM text of one DER object.
pub fn pem(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The certificates in a PEM bundle: those that parse, and what is wrong with the rest.
pub fn parse_bundle(pem_text: &[u8]) -> (Vec<Cert>, Vec<String>) {
    let (mut certs, mut problems) = (Vec::new(), Vec::new());
    for (i, block) in x509_parser::pem::Pem::iter_from_buffer(pem_text).enumerate() {
        match block {
            Ok(p) if p.label == "CERTIFICATE" => match Cert::from_der(&p.contents) {
                Ok(c) => certs.push(c),
                Err(e) => problems.push(format!("certificate {} does not parse: {e}", i + 1)),
            },
            Ok(p) => problems.push(format!(
                "block {} is a {}, not a certificate",
                i + 1,
                p.label
            )),
            Err(e) => {
                problems.push(format!("block {} is not PEM: {e}", i + 1));
                break;
            }
        }
    }
    if certs.is_empty() && problems.is_empty() && !pem_text.iter().all(u8::is_ascii_whitespace) {
        problems.push("no PEM certificate in it".into());
    }
    (certs, problems)
}

/// A certificate with its private key (PEM), as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    pub cert: Cert,
    pub key_pem: String,
}

/// Reads a certificate and its key; what is wrong when they are not a usable pair.
pub fn parse_keyed(cert_pem: &[u8], key_pem: &[u8]) -> Result<Keyed, String> {
    let (mut certs, problems) = parse_bundle(cert_pem);
    if let Some(p) = problems.into_iter().next() {
        return Err(p);
    }
    if certs.is_empty() {
        return Err("no certificate".into());
    }
    let cert = certs.swap_remove(0);
    let key_text = std::str::from_utf8(key_pem).map_err(|_| "the key is not text".to_string())?;
    let key = KeyPair::from_pem(key_text).map_err(|e| format!("the key does not parse: {e}"))?;
    if !cert.matches_key(&key) {
        return Err("the key is not the certificate's".into());
    }
    Ok(Keyed {
        cert,
        key_pem: key_text.to_string(),
    })
}

fn at(seconds: i64) -> Result<time::OffsetDateTime, MaterialError> {
    time::OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| MaterialError::Time(seconds))
}

/// A new self-signed CA valid from `now` for `validity` seconds.
pub fn new_ca(common_name: &str, now: i64, validity: i64) -> Result<Keyed, MaterialError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{common_name} {now}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = at(now - BACKDATE)?;
    params.not_after = at(now + validity)?;
    let cert = params.self_signed(&key)?;
    Ok(Keyed {
        cert: Cert::from_der(cert.der()).map_err(|_| rcgen::Error::CouldNotParseCertificate)?,
        key_pem: key.serialize_pem(),
    })
}

/// A new serving certificate for `dns`/`ips`, signed by `signer`, valid from `now` for
/// `validity` seconds but never past the signer's own end.
pub fn new_leaf(
    signer: &Keyed,
    dns: &[String],
    ips: &[IpAddr],
    now: i64,
    validity: i64,
) -> Result<Keyed, MaterialError> {
    let ca_key = KeyPair::from_pem(&signer.key_pem)?;
    let issuer = Issuer::from_ca_cert_der(&signer.cert.der.clone().into(), ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(first) = dns.first() {
        params.distinguished_name.push(DnType::CommonName, first);
    }
    for name in dns {
        params.subject_alt_names.push(SanType::DnsName(
            name.clone().try_into().map_err(MaterialError::Generate)?,
        ));
    }
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = at(now - BACKDATE)?;
    params.not_after = at((now + validity).min(signer.cert.not_after))?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Keyed {
        cert: Cert::from_der(cert.der()).map_err(|_| rcgen::Error::CouldNotParseCertificate)?,
        key_pem: key.serialize_pem(),
    })
}

/// The SANs a leaf for `dns`/`ips` has, as [`Cert::sans`] lists them.
pub fn wanted_sans(dns: &[String], ips: &[IpAddr]) -> Vec<String> {
    let mut all: Vec<String> = dns
        .iter()
        .cloned()
        .chain(ips.iter().map(IpAddr::to_string))
        .collect();
    all.sort();
    all.dedup();
    all
}
