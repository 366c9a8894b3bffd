//! Small YAML renderings for the fixes shown in messages.

use crate::selector::{Requirement, Selector};

/// A selector as YAML lines (matchLabels / matchExpressions), indented by `indent` spaces.
pub(crate) fn selector(sel: &Selector, indent: usize) -> String {
    let pad = " ".repeat(indent);
    if sel.is_everything() {
        return format!("{pad}{{}}\n");
    }
    let mut labels = String::new();
    let mut exprs = String::new();
    for r in sel.requirements() {
        match r {
            Requirement::In(k, vs) if vs.len() == 1 => {
                labels.push_str(&format!("{pad}  {k}: {}\n", vs[0]))
            }
            Requirement::In(k, vs) | Requirement::NotIn(k, vs) => {
                let op = if matches!(r, Requirement::In(..)) {
                    "In"
                } else {
                    "NotIn"
                };
                exprs.push_str(&format!(
                    "{pad}- key: {k}\n{pad}  operator: {op}\n{pad}  values: [{}]\n",
                    vs.join(", ")
                ));
            }
            Requirement::Exists(k) => {
                exprs.push_str(&format!("{pad}- key: {k}\n{pad}  operator: Exists\n"))
            }
            Requirement::DoesNotExist(k) => {
                exprs.push_str(&format!("{pad}- key: {k}\n{pad}  operator: DoesNotExist\n"))
            }
        }
    }
    let mut out = String::new();
    if !labels.is_empty() {
        out.push_str(&format!("{pad}matchLabels:\n{labels}"));
    }
    if !exprs.is_empty() {
        // Expressions are list items under the key, indented like the labels.
        let exprs: String = exprs.lines().map(|l| format!("  {l}\n")).collect();
        out.push_str(&format!("{pad}matchExpressions:\n{exprs}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    #[test]
    fn renders_labels_and_expressions() {
        let sel = Selector::compile(&LabelSelector {
            match_labels: Some([("app".to_string(), "api".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        })
        .unwrap();
        assert_eq!(
            selector(&sel, 4),
            "    matchLabels:\n      app: api\n    matchExpressions:\n      - key: tier\n        operator: NotIn\n        values: [db]\n"
        );
        assert_eq!(selector(&Selector::everything(), 2), "  {}\n");
    }
}
