//! Editing the node's CNI configuration (pure): `palisade-cni` as the last plugin of a
//! `.conflist`, and out again. Every result is parsed back and checked before it is written.

use palisade_cni::protocol::PLUGIN_TYPE;
use serde_json::{Map, Value};

/// The plugin's entry: where the enforcer listens, which node (for messages), how long ADD waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The enforcer's socket as the node (the container runtime) sees it.
    pub socket: String,
    pub node_name: String,
    pub timeout_seconds: u64,
}

impl Entry {
    pub fn to_value(&self) -> Value {
        serde_json::json!({
            "type": PLUGIN_TYPE,
            "socket": self.socket,
            "nodeName": self.node_name,
            "timeoutSeconds": self.timeout_seconds,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConflistError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error(
        "a single-plugin configuration (no plugins list), which cannot chain a plugin; \
         first-packet isolation needs the CNI's configuration as a .conflist"
    )]
    SinglePlugin,
    #[error("its plugins list is missing or not a list")]
    NoPluginList,
    #[error("the edited configuration would not be valid ({0}); left as it was")]
    Invalid(String),
}

fn is_ours(plugin: &Value) -> bool {
    plugin.get("type").and_then(Value::as_str) == Some(PLUGIN_TYPE)
}

fn parse(text: &str) -> Result<Map<String, Value>, ConflistError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ConflistError::NotJson("not a JSON object".into())),
        Err(e) => Err(ConflistError::NotJson(e.to_string())),
    }
}

/// Whether the configuration lists the plugin.
pub fn has_plugin(text: &str) -> bool {
    parse(text).is_ok_and(|o| {
        o.get("plugins")
            .and_then(Value::as_array)
            .is_some_and(|list| list.iter().any(is_ours))
    })
}

/// The configuration with `entry` as its last plugin (exactly once, as given), or `None` when it
/// is so already. A file whose single plugin is not in a `plugins` list is refused: the runtime
/// reads a `.conf` as one plugin and would not run a second.
pub fn with_plugin(text: &str, entry: &Entry) -> Result<Option<String>, ConflistError> {
    let mut conf = parse(text)?;
    let wanted = entry.to_value();
    if !conf.contains_key("plugins") && conf.contains_key("type") {
        return Err(ConflistError::SinglePlugin);
    }
    let Some(Value::Array(list)) = conf.get_mut("plugins") else {
        return Err(ConflistError::NoPluginList);
    };
    let ours = list.iter().filter(|p| is_ours(p)).count();
    if ours == 1 && list.last() == Some(&wanted) {
        return Ok(None);
    }
    list.retain(|p| !is_ours(p));
    if list.is_empty() {
        return Err(ConflistError::Invalid(
            "no plugin before palisade-cni gives the pod its addresses".into(),
        ));
    }
    list.push(wanted);
    render(conf).map(Some)
}

/// The configuration without the plugin, or `None` when it has none.
pub fn without_plugin(text: &str) -> Result<Option<String>, ConflistError> {
    let mut conf = parse(text)?;
    let Some(Value::Array(list)) = conf.get_mut("plugins") else {
        return Ok(None);
    };
    if !list.iter().any(is_ours) {
        return Ok(None);
    }
    list.retain(|p| !is_ours(p));
    if list.is_empty() {
        return Err(ConflistError::Invalid(
            "palisade-cni was its only plugin".into(),
        ));
    }
    render(conf).map(Some)
}

/// Whether `a` and `b` are the same configuration (same JSON, whatever the layout).
pub fn same(a: &str, b: &str) -> bool {
    matches!((parse(a), parse(b)), (Ok(a), Ok(b)) if a == b)
}

/// Pretty JSON, validated the way the enforcer reads CNI configurations.
fn render(conf: Map<String, Value>) -> Result<String, ConflistError> {
    let mut text = serde_json::to_string_pretty(&Value::Object(conf))
        .map_err(|e| ConflistError::Invalid(e.to_string()))?;
    text.push('\n');
    crate::cni::parse_config(&text).map_err(ConflistError::Invalid)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLANNEL: &str = r#"{
  "name": "cbr0",
  "cniVersion": "0.3.1",
  "plugins": [
    {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
"#;

    fn entry() -> Entry {
        Entry {
            socket: "/run/palisade/enforcer.sock".into(),
            node_name: "node-1".into(),
            timeout_seconds: 10,
        }
    }

    fn types(text: &str) -> Vec<String> {
        crate::cni::parse_config(text).unwrap().1
    }

    #[test]
    fn added_last_once_and_idempotent() {
        let added = with_plugin(FLANNEL, &entry()).unwrap().unwrap();
        assert_eq!(types(&added), ["flannel", "portmap", "palisade-cni"]);
        assert!(has_plugin(&added) && !has_plugin(FLANNEL));
        let v: Value = serde_json::from_str(&added).unwrap();
        assert_eq!(
            v["plugins"][2],
            serde_json::json!({"type": "palisade-cni", "socket": "/run/palisade/enforcer.sock",
                "nodeName": "node-1", "timeoutSeconds": 10})
        );
        assert_eq!(v["cniVersion"], "0.3.1");
        assert_eq!(with_plugin(&added, &entry()).unwrap(), None);
    }

    #[test]
    fn moved_last_and_updated_when_the_cni_or_the_settings_changed() {
        let added = with_plugin(FLANNEL, &entry()).unwrap().unwrap();
        // The CNI appended a plugin after ours.
        let mut v: Value = serde_json::from_str(&added).unwrap();
        v["plugins"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "bandwidth"}));
        let again = with_plugin(&v.to_string(), &entry()).unwrap().unwrap();
        assert_eq!(
            types(&again),
            ["flannel", "portmap", "bandwidth", "palisade-cni"]
        );
        // A new timeout: one entry, the new one.
        let longer = Entry {
            timeout_seconds: 20,
            ..entry()
        };
        let updated = with_plugin(&again, &longer).unwrap().unwrap();
        assert_eq!(
            types(&updated)
                .iter()
                .filter(|t| *t == "palisade-cni")
                .count(),
            1
        );
        assert!(updated.contains("\"timeoutSeconds\": 20"));
    }

    #[test]
    fn removed_to_the_same_configuration() {
        let added = with_plugin(FLANNEL, &entry()).unwrap().unwrap();
        let removed = without_plugin(&added).unwrap().unwrap();
        assert!(same(&removed, FLANNEL));
        assert!(!same(&added, FLANNEL));
        assert_eq!(without_plugin(FLANNEL).unwrap(), None);
        assert_eq!(without_plugin(r#"{"type": "bridge"}"#).unwrap(), None);
    }

    #[test]
    fn never_breaks_a_configuration() {
        let single = r#"{"cniVersion": "0.4.0", "name": "b", "type": "bridge"}"#;
        assert_eq!(
            with_plugin(single, &entry()).unwrap_err(),
            ConflistError::SinglePlugin
        );
        assert!(matches!(
            with_plugin("{not json", &entry()),
            Err(ConflistError::NotJson(_))
        ));
        assert_eq!(
            with_plugin(r#"{"plugins": 3}"#, &entry()).unwrap_err(),
            ConflistError::NoPluginList
        );
        assert!(matches!(
            with_plugin(r#"{"plugins": []}"#, &entry()),
            Err(ConflistError::Invalid(_))
        ));
        // A list the enforcer's reader refuses (a plugin without a type) is left alone.
        assert!(matches!(
            with_plugin(r#"{"plugins": [{"name": "x"}]}"#, &entry()),
            Err(ConflistError::Invalid(_))
        ));
        let only_ours = r#"{"plugins": [{"type": "palisade-cni"}]}"#;
        assert!(matches!(
            without_plugin(only_ours),
            Err(ConflistError::Invalid(_))
        ));
    }
}
