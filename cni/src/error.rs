//! The plugin's errors, as the CNI specification's error result: `{"cniVersion", "code",
//! "msg", "details"}` on stdout and a non-zero exit. The container runtime passes `msg` up, and
//! the kubelet shows it in the pod's `FailedCreatePodSandBox` event.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// CNI code 1.
    #[error("palisade: {0}")]
    IncompatibleVersion(String),
    /// CNI code 4: `CNI_COMMAND`, `CNI_ARGS`, … missing or malformed.
    #[error("palisade: {0}")]
    InvalidEnv(String),
    /// CNI code 6: stdin is not the JSON configuration it should be.
    #[error("palisade: {0}")]
    Decode(String),
    /// CNI code 7: the configuration lacks what the plugin needs (e.g. a previous result).
    #[error("palisade: {0}")]
    InvalidConfig(String),
    /// CNI code 11 ("try again later"): the enforcer did not confirm the pod's rules; the pod
    /// stays without network (fail closed).
    #[error("palisade: {0}; the pod stays without network until it does (fail closed)")]
    NotConfirmed(String),
}

impl PluginError {
    /// The code of the CNI specification's well-known errors.
    pub fn code(&self) -> u32 {
        match self {
            PluginError::IncompatibleVersion(_) => 1,
            PluginError::InvalidEnv(_) => 4,
            PluginError::Decode(_) => 6,
            PluginError::InvalidConfig(_) => 7,
            PluginError::NotConfirmed(_) => 11,
        }
    }

    /// The error result the plugin prints, in `cni_version` (the configuration's, or the
    /// newest the plugin speaks when the configuration could not be read).
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ErrorResult<'a> {
            cni_version: &'a str,
            code: u32,
            msg: String,
        }
        serde_json::to_string(&ErrorResult {
            cni_version,
            code: self.code(),
            msg: self.to_string(),
        })
        .unwrap_or_else(|_| format!("{{\"code\":{}}}", self.code()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_closed_says_what_and_why() {
        let e = PluginError::NotConfirmed(
            "the enforcer on node node-1 did not confirm the pod's rules within 10s".into(),
        );
        assert_eq!(e.code(), 11);
        let json: serde_json::Value = serde_json::from_str(&e.to_json("1.0.0")).unwrap();
        assert_eq!(json["cniVersion"], "1.0.0");
        assert_eq!(json["code"], 11);
        assert_eq!(
            json["msg"],
            "palisade: the enforcer on node node-1 did not confirm the pod's rules within 10s; \
             the pod stays without network until it does (fail closed)"
        );
    }

    #[test]
    fn codes_of_the_specification() {
        assert_eq!(PluginError::IncompatibleVersion(String::new()).code(), 1);
        assert_eq!(PluginError::InvalidEnv(String::new()).code(), 4);
        assert_eq!(PluginError::Decode(String::new()).code(), 6);
        assert_eq!(PluginError::InvalidConfig(String::new()).code(), 7);
    }
}
