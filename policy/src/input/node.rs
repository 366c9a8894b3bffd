//! A YAML (or JSON) document as a tree that remembers where each value was written, so mistakes
//! can be reported with their line.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub column: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The node at a path such as `spec.ingress[0].from[1].ipBlock.cidr`; where the path leaves
    /// the tree, the deepest node reached.
    pub fn locate(&self, path: &str) -> &Node {
        let mut node = self;
        for part in path.split('.') {
            let (key, indexes) = part
                .split_once('[')
                .map_or((part, ""), |(k, rest)| (k, rest));
            if !key.is_empty() {
                match node.get(key) {
                    Some(n) => node = n,
                    None => return node,
                }
            }
            for idx in indexes.split('[').filter(|s| !s.is_empty()) {
                let Ok(i) = idx.trim_end_matches(']').parse::<usize>() else {
                    return node;
                };
                match &node.value {
                    Value::Seq(items) if i < items.len() => node = &items[i],
                    _ => return node,
                }
            }
        }
        node
    }

    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Value::Str(s) => s.clone().into(),
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.key_text(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    /// Moves the tree `by` lines down (a document parsed apart from the lines before it).
    pub(crate) fn shift_lines(&mut self, by: usize) {
        self.line += by;
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.shift_lines(by)),
            Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                k.shift_lines(by);
                v.shift_lines(by);
            }),
            _ => {}
        }
    }

    /// A tree from JSON (objects read from the apiserver), every node at line `line`.
    pub fn from_json(value: &serde_json::Value, line: usize) -> Node {
        let node = |value| Node {
            line,
            column: 0,
            value,
        };
        node(match value {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or_default()),
            },
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(items) => {
                Value::Seq(items.iter().map(|v| Node::from_json(v, line)).collect())
            }
            serde_json::Value::Object(entries) => Value::Map(
                entries
                    .iter()
                    .filter(|(k, _)| k.as_str() != SKIPPED_KEY)
                    .map(|(k, v)| (node(Value::Str(k.clone())), Node::from_json(v, line)))
                    .collect(),
            ),
        })
    }

    /// A mapping key as text (YAML allows numbers and booleans as keys).
    pub fn key_text(&self) -> String {
        match &self.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => "null".into(),
            Value::Seq(_) | Value::Map(_) => "<complex key>".into(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            line: spanned.referenced.line() as usize,
            column: spanned.referenced.column() as usize,
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// `metadata.managedFields`: often half of what `kubectl get -o yaml` prints, and nothing
/// NetworkPolicy semantics read; not kept, so a whole cluster's dump fits in memory.
const SKIPPED_KEY: &str = "managedFields";

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Node>()? {
            if k.as_str() == Some(SKIPPED_KEY) {
                map.next_value::<de::IgnoredAny>()?;
                continue;
            }
            let v = map.next_value::<Node>()?;
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }
}

/// Parses every document of a YAML stream (JSON is YAML too); empty documents are left out.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, String> {
    let mut docs = Vec::new();
    super::read::documents(text.as_bytes(), |d| docs.push(d)).map_err(|e| match e.line {
        Some(line) => format!("line {line}: {}", e.message),
        None => e.message,
    })?;
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_lines_and_locates_paths() {
        let docs = parse_documents(
            "a: 1\n---\nspec:\n  ingress:\n  - from:\n    - ipBlock:\n        cidr: x\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        let cidr = docs[1].locate("spec.ingress[0].from[0].ipBlock.cidr");
        assert_eq!(cidr.as_str(), Some("x"));
        assert_eq!(cidr.line, 7);
        // Where the path leaves the tree, the deepest node reached.
        assert_eq!(
            docs[1].locate("spec.egress[3]"),
            docs[1].get("spec").unwrap()
        );
        assert_eq!(docs[0].to_json(), serde_json::json!({"a": 1}));
    }
}
