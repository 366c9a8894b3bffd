//! What the ValidatingWebhookConfigurations the tests register need from the control plane.

use std::process::Command;

use crate::{ControlPlane, Error};

/// The control plane's CA as a webhook configuration's `caBundle` (base64 of the PEM).
pub fn ca_bundle(cp: &ControlPlane) -> Result<String, Error> {
    let out = Command::new("base64")
        .arg("-w0")
        .arg(cp.ca_file())
        .output()
        .map_err(|source| Error::Io {
            what: "running base64".into(),
            source,
        })?;
    crate::util::succeeded("base64 of the cluster CA", out)
}
