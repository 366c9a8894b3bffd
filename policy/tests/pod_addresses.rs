//! A pod's addresses, as each IP family sees them (what `palisade reach --family` and the
//! enforcer's per-family rules read).

use palisade_policy::{IpFamily, Pod};

/// A pod's addresses come from `status.podIPs` (at most one per family, `podIP` first); an
/// apiserver that sets only `podIP` gives one. As one family sees it, a pod has only its
/// address of that family, or none.
#[test]
fn pods_read_both_addresses_from_pod_ips() {
    let pod = |status: serde_json::Value| {
        Pod::from_k8s(
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "a", "namespace": "x"},
                "status": status
            }))
            .unwrap(),
        )
    };
    let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
    let dual = pod(
        serde_json::json!({"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}),
    );
    assert_eq!(dual.ip, Some(ip("10.0.0.1")));
    assert_eq!(dual.ips, [ip("10.0.0.1"), ip("fd00::1")]);
    assert_eq!(dual.ip_of(IpFamily::V6), Some(ip("fd00::1")));
    assert_eq!(dual.in_family(IpFamily::V6).ip, Some(ip("fd00::1")));
    assert_eq!(dual.families().collect::<Vec<_>>(), IpFamily::ALL);
    let old = pod(serde_json::json!({"podIP": "10.0.0.2"}));
    assert_eq!(old.ips, [ip("10.0.0.2")]);
    let v4 = old.in_family(IpFamily::V6);
    assert_eq!((v4.ip, v4.ips.len(), v4.is_peer()), (None, 0, false));
}
