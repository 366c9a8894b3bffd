//! `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`, where the kubelet's runtime names the pod
//! (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_UID`, `K8S_POD_INFRA_CONTAINER_ID`).

use crate::PluginError;
use crate::protocol::PodRef;

/// The pod `CNI_ARGS` names; `None` when it names none (a container started outside Kubernetes,
/// e.g. with `nerdctl`, to which no Kubernetes policy applies).
pub fn pod(cni_args: &str) -> Result<Option<PodRef>, PluginError> {
    let mut namespace = None;
    let mut name = None;
    let mut uid = None;
    for pair in cni_args.split(';').filter(|p| !p.trim().is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(PluginError::InvalidEnv(format!(
                "CNI_ARGS has {pair:?}, not KEY=VALUE"
            )));
        };
        match key.trim() {
            "K8S_POD_NAMESPACE" => namespace = Some(value.trim().to_string()),
            "K8S_POD_NAME" => name = Some(value.trim().to_string()),
            "K8S_POD_UID" => uid = Some(value.trim().to_string()).filter(|u| !u.is_empty()),
            _ => {}
        }
    }
    match (namespace, name) {
        (Some(namespace), Some(name)) if !namespace.is_empty() && !name.is_empty() => {
            Ok(Some(PodRef {
                namespace,
                name,
                uid,
            }))
        }
        (None, None) => Ok(None),
        (namespace, name) => Err(PluginError::InvalidEnv(format!(
            "CNI_ARGS names a pod only in part (K8S_POD_NAMESPACE {namespace:?}, K8S_POD_NAME {name:?})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubelets_arguments() {
        let p = pod("IgnoreUnknown=1;K8S_POD_NAMESPACE=guarded;K8S_POD_NAME=web-7d9f-x2;K8S_POD_INFRA_CONTAINER_ID=4f2a;K8S_POD_UID=9b1e-77")
            .unwrap()
            .unwrap();
        assert_eq!(
            p,
            PodRef {
                namespace: "guarded".into(),
                name: "web-7d9f-x2".into(),
                uid: Some("9b1e-77".into()),
            }
        );
    }

    #[test]
    fn without_uid_and_with_stray_separators() {
        let p = pod(";K8S_POD_NAME=a;;K8S_POD_NAMESPACE=b;")
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.namespace.as_str(), p.name.as_str(), p.uid),
            ("b", "a", None)
        );
    }

    #[test]
    fn no_pod_outside_kubernetes() {
        assert_eq!(pod("").unwrap(), None);
        assert_eq!(pod("IgnoreUnknown=1").unwrap(), None);
    }

    #[test]
    fn half_a_pod_or_garbage_is_refused() {
        let e = pod("K8S_POD_NAMESPACE=x").unwrap_err();
        assert_eq!(e.code(), 4);
        assert!(e.to_string().contains("only in part"), "{e}");
        assert!(pod("K8S_POD_NAMESPACE=x;K8S_POD_NAME=").is_err());
        assert!(pod("K8S_POD_NAMESPACE").is_err());
    }
}
