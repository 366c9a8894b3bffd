//! `peer-and-or`: a peer list with a lone namespaceSelector item next to a lone podSelector
//! item. That is two peers (OR); it is most often meant as one peer (AND).

use super::{AT, Issue, name, yaml};
use crate::policy::{NamespaceScope, Peer, Policy};

pub(crate) fn check(policy: &Policy) -> Vec<Issue> {
    let mut issues = Vec::new();
    for (direction, r, rule) in policy.all_rules() {
        let lone_ns = rule.peers.iter().find_map(|p| match p {
            Peer::Pods {
                namespaces: NamespaceScope::Matching(ns),
                pods,
            } if pods.is_everything() => Some(ns),
            _ => None,
        });
        let lone_pods = rule.peers.iter().find_map(|p| match p {
            Peer::Pods {
                namespaces: NamespaceScope::Own,
                pods,
            } if !pods.is_everything() => Some(pods),
            _ => None,
        });
        let (Some(ns), Some(pods)) = (lone_ns, lone_pods) else {
            continue;
        };
        let field = direction.peers_field();
        let summary = format!("{AT}: namespaceSelector OR podSelector (2 items); AND is one item");
        let detail = format!(
            "NetworkPolicy {} {AT} lists a namespaceSelector ({ns}) and a podSelector \
             ({pods}) as two items. That allows every pod in the matching namespaces, OR pods {pods} \
             of namespace {}. If you meant pods {pods} in namespaces {ns}, put both selectors in one \
             item (no dash before podSelector):\n  {field}:\n  - namespaceSelector:\n{}    podSelector:\n{}",
            name(policy),
            policy.namespace,
            yaml::selector(ns, 6),
            yaml::selector(pods, 6),
        );
        issues.push(Issue::new(summary, detail).at(format!("{direction}[{r}].{field}")));
    }
    issues
}
