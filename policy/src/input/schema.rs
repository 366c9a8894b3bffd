//! The shape of a NetworkPolicy, to catch what the apiserver would silently drop or refuse:
//! unknown fields (`types:` for `policyTypes:`), labels written straight under a selector
//! without `matchLabels:`, lists where a mapping belongs.

use super::node::{Node, Value};

#[derive(Debug)]
pub(crate) enum Schema {
    Object(&'static [(&'static str, &'static Schema)]),
    Array(&'static Schema),
    /// A mapping of label-like strings.
    StringMap,
    Str,
    Int,
    IntOrString,
    Any,
}

static LABEL_SELECTOR: Schema = Schema::Object(&[
    ("matchLabels", &Schema::StringMap),
    (
        "matchExpressions",
        &Schema::Array(&Schema::Object(&[
            ("key", &Schema::Str),
            ("operator", &Schema::Str),
            ("values", &Schema::Array(&Schema::Str)),
        ])),
    ),
]);
static PEER: Schema = Schema::Object(&[
    ("podSelector", &LABEL_SELECTOR),
    ("namespaceSelector", &LABEL_SELECTOR),
    (
        "ipBlock",
        &Schema::Object(&[
            ("cidr", &Schema::Str),
            ("except", &Schema::Array(&Schema::Str)),
        ]),
    ),
]);
static PORT: Schema = Schema::Object(&[
    ("protocol", &Schema::Str),
    ("port", &Schema::IntOrString),
    ("endPort", &Schema::Int),
]);
pub(crate) static NETWORK_POLICY: Schema = Schema::Object(&[
    ("apiVersion", &Schema::Str),
    ("kind", &Schema::Str),
    ("metadata", &Schema::Any),
    (
        "spec",
        &Schema::Object(&[
            ("podSelector", &LABEL_SELECTOR),
            ("policyTypes", &Schema::Array(&Schema::Str)),
            (
                "ingress",
                &Schema::Array(&Schema::Object(&[
                    ("from", &Schema::Array(&PEER)),
                    ("ports", &Schema::Array(&PORT)),
                ])),
            ),
            (
                "egress",
                &Schema::Array(&Schema::Object(&[
                    ("to", &Schema::Array(&PEER)),
                    ("ports", &Schema::Array(&PORT)),
                ])),
            ),
        ]),
    ),
    ("status", &Schema::Any),
]);

static CNP_NAMESPACED_POD: Schema = Schema::Object(&[
    ("namespaceSelector", &LABEL_SELECTOR),
    ("podSelector", &LABEL_SELECTOR),
]);
static CNP_PROTOCOL_PORT: Schema = Schema::Object(&[(
    "destinationPort",
    &Schema::Object(&[
        ("number", &Schema::Int),
        (
            "range",
            &Schema::Object(&[("start", &Schema::Int), ("end", &Schema::Int)]),
        ),
    ]),
)]);
static CNP_PROTOCOLS: Schema = Schema::Array(&Schema::Object(&[
    ("tcp", &CNP_PROTOCOL_PORT),
    ("udp", &CNP_PROTOCOL_PORT),
    ("sctp", &CNP_PROTOCOL_PORT),
    ("destinationNamedPort", &Schema::Str),
]));
/// The fields of `policy.networking.k8s.io/v1beta1` and `v1alpha2` ClusterNetworkPolicy (v0.3.0, one schema), the
/// experimental channel's egress peers included (they are refused by name, not as unknown).
pub(crate) static CLUSTER_NETWORK_POLICY: Schema = Schema::Object(&[
    ("apiVersion", &Schema::Str),
    ("kind", &Schema::Str),
    ("metadata", &Schema::Any),
    (
        "spec",
        &Schema::Object(&[
            ("tier", &Schema::Str),
            ("priority", &Schema::Int),
            (
                "subject",
                &Schema::Object(&[
                    ("namespaces", &LABEL_SELECTOR),
                    ("pods", &CNP_NAMESPACED_POD),
                ]),
            ),
            (
                "ingress",
                &Schema::Array(&Schema::Object(&[
                    ("name", &Schema::Str),
                    ("action", &Schema::Str),
                    (
                        "from",
                        &Schema::Array(&Schema::Object(&[
                            ("namespaces", &LABEL_SELECTOR),
                            ("pods", &CNP_NAMESPACED_POD),
                        ])),
                    ),
                    ("protocols", &CNP_PROTOCOLS),
                ])),
            ),
            (
                "egress",
                &Schema::Array(&Schema::Object(&[
                    ("name", &Schema::Str),
                    ("action", &Schema::Str),
                    (
                        "to",
                        &Schema::Array(&Schema::Object(&[
                            ("namespaces", &LABEL_SELECTOR),
                            ("pods", &CNP_NAMESPACED_POD),
                            ("networks", &Schema::Array(&Schema::Str)),
                            ("nodes", &LABEL_SELECTOR),
                            ("domainNames", &Schema::Array(&Schema::Str)),
                        ])),
                    ),
                    ("protocols", &CNP_PROTOCOLS),
                ])),
            ),
        ]),
    ),
    ("status", &Schema::Any),
]);

/// A mistake in the shape of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    pub line: usize,
    pub path: String,
    pub message: String,
}

/// Common misspellings people make, with what they meant.
const KNOWN_SLIPS: &[(&str, &str)] = &[
    ("types", "policyTypes"),
    ("policyType", "policyTypes"),
    ("selector", "podSelector"),
    ("podselector", "podSelector"),
    ("namespaceselector", "namespaceSelector"),
    ("ipblock", "ipBlock"),
    ("matchlabels", "matchLabels"),
    ("labels", "matchLabels"),
    ("port_range", "endPort"),
    ("endport", "endPort"),
    ("ingres", "ingress"),
    ("egres", "egress"),
];

pub(crate) fn validate(node: &Node, schema: &Schema, path: &str, out: &mut Vec<ShapeError>) {
    let here = |message: String| ShapeError {
        line: node.line,
        path: path.to_string(),
        message,
    };
    if matches!(node.value, Value::Null) {
        return; // `field:` with nothing after it is the same as leaving it out
    }
    match schema {
        Schema::Any => {}
        Schema::Str => {
            if !matches!(node.value, Value::Str(_)) {
                out.push(here(format!(
                    "expected a string, found {}",
                    node.value.kind()
                )));
            }
        }
        Schema::Int => {
            if !matches!(node.value, Value::Int(_)) {
                out.push(here(format!(
                    "expected a whole number, found {}",
                    node.value.kind()
                )));
            }
        }
        Schema::IntOrString => {
            if !matches!(node.value, Value::Int(_) | Value::Str(_)) {
                out.push(here(format!(
                    "expected a port number or name, found {}",
                    node.value.kind()
                )));
            }
        }
        Schema::StringMap => match &node.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    if !matches!(v.value, Value::Str(_)) {
                        out.push(ShapeError {
                            line: v.line,
                            path: format!("{path}.{}", k.key_text()),
                            message: format!(
                                "label values are strings; found {} (quote it: \"{}\")",
                                v.value.kind(),
                                v.to_json().to_string().trim_matches('"')
                            ),
                        });
                    }
                }
            }
            other => out.push(here(format!(
                "expected a mapping of labels, found {}",
                other.kind()
            ))),
        },
        Schema::Array(item) => match &node.value {
            Value::Seq(items) => {
                for (i, n) in items.iter().enumerate() {
                    validate(n, item, &format!("{path}[{i}]"), out);
                }
            }
            other => out.push(here(format!(
                "expected a list (items start with `- `), found {}",
                other.kind()
            ))),
        },
        Schema::Object(fields) => {
            let Value::Map(entries) = &node.value else {
                out.push(here(format!(
                    "expected a mapping, found {}",
                    node.value.kind()
                )));
                return;
            };
            for (k, v) in entries {
                let key = k.key_text();
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match fields.iter().find(|(name, _)| *name == key) {
                    Some((_, s)) => validate(v, s, &child, out),
                    None => out.push(ShapeError {
                        line: k.line,
                        path: child,
                        message: unknown_field(&key, fields, path),
                    }),
                }
            }
        }
    }
}

fn unknown_field(key: &str, fields: &[(&str, &Schema)], parent: &str) -> String {
    let is_selector = fields.iter().any(|(n, _)| *n == "matchLabels");
    let place = if parent.is_empty() {
        "the object".to_string()
    } else {
        format!("`{parent}`")
    };
    if is_selector {
        let everything = if parent.ends_with("namespaceSelector") || parent.ends_with("namespaces")
        {
            "every namespace"
        } else {
            "every pod"
        };
        return format!(
            "unknown field `{key}` in {place}: a label selector takes labels under `matchLabels:` \
             (write `matchLabels: {{{key}: ...}}`); without it the apiserver drops the label and the \
             selector matches {everything}"
        );
    }
    let known: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
    let meant = KNOWN_SLIPS
        .iter()
        .find(|(slip, _)| slip.eq_ignore_ascii_case(key))
        .map(|(_, m)| *m)
        .filter(|m| known.contains(m))
        .or_else(|| known.iter().copied().find(|k| k.eq_ignore_ascii_case(key)));
    match meant {
        // What ignoring it means, where that is not obvious.
        Some("policyTypes") => format!(
            "unknown field `{key}` in {place} (did you mean `policyTypes`?); the apiserver ignores \
             it, so policyTypes defaults to [Ingress], plus Egress only when there are egress rules"
        ),
        Some(m) => format!(
            "unknown field `{key}` in {place} (did you mean `{m}`?); the apiserver ignores it"
        ),
        None => format!(
            "unknown field `{key}` in {place}; known fields: {}",
            known.join(", ")
        ),
    }
}
