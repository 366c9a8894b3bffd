//! The chart's monitoring, rendered by the real `helm template`: PodMonitors, the
//! PrometheusRule and the Grafana dashboard are off by default (nothing rendered) and each is one
//! value to turn on; every metric name the alerts and the dashboard query is one a component
//! registers (read by encoding each component's own registry), so renaming a metric fails here.

use std::collections::BTreeSet;
use std::time::Duration;

use palisade_e2e::chart;
use palisade_policy::input::parse_documents;

const ALL_ON: &str = "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true,metrics.grafanaDashboard.enabled=true";

/// The rendered objects as JSON.
fn render(args: &[&str]) -> Vec<serde_json::Value> {
    let text = chart::template(args).unwrap_or_else(|e| panic!("helm template {args:?}: {e}"));
    parse_documents(&text)
        .unwrap_or_else(|e| panic!("the rendered YAML: {e}"))
        .iter()
        .map(|d| d.to_json())
        .filter(|o| o.get("kind").is_some())
        .collect()
}

fn of_kind<'a>(objects: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn dashboards(objects: &[serde_json::Value]) -> Vec<serde_json::Value> {
    of_kind(objects, "ConfigMap")
        .into_iter()
        .filter(|c| c["metadata"]["labels"]["grafana_dashboard"].is_string())
        .map(|c| {
            let json = c["data"]["palisade.json"]
                .as_str()
                .expect("the dashboard's JSON");
            serde_json::from_str(json).expect("the dashboard is JSON")
        })
        .collect()
}

fn alerts(objects: &[serde_json::Value]) -> Vec<(String, String)> {
    of_kind(objects, "PrometheusRule")
        .iter()
        .flat_map(|r| r["spec"]["groups"].as_array().cloned().unwrap_or_default())
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["alert"].as_str().unwrap_or_default().to_string(),
                r["expr"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Every query of the dashboard's panels (rows included).
fn queries(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(e) = m.get("expr").and_then(|e| e.as_str()) {
                    out.push(e.to_string());
                }
                m.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

#[test]
fn monitoring_is_off_by_default_and_one_value_each_turns_it_on() {
    let off = render(&[]);
    assert!(of_kind(&off, "PodMonitor").is_empty());
    assert!(of_kind(&off, "PrometheusRule").is_empty());
    assert!(dashboards(&off).is_empty());

    let monitors = render(&["--set", "metrics.serviceMonitor.enabled=true"]);
    let names: Vec<&str> = of_kind(&monitors, "PodMonitor")
        .iter()
        .map(|m| m["metadata"]["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        ["palisade-webhook", "palisade-operator", "palisade-enforcer"]
    );
    assert!(of_kind(&monitors, "PrometheusRule").is_empty());
    assert!(dashboards(&monitors).is_empty());

    let rules = render(&["--set", "metrics.prometheusRule.enabled=true"]);
    let names: Vec<String> = alerts(&rules).into_iter().map(|(a, _)| a).collect();
    assert_eq!(
        names,
        [
            "PalisadeWebhookDown",
            "PalisadeOperatorNoLeader",
            "PalisadeOperatorReconcileErrors",
            "PalisadeNodeNotEnforcing",
            "PalisadeEnforcerSyncFailing",
            "PalisadeRulesLagging",
            "PalisadeWebhookCertificateExpiring",
        ]
    );
    assert!(of_kind(&rules, "PodMonitor").is_empty());
    assert!(dashboards(&rules).is_empty());

    let dashboard = render(&["--set", "metrics.grafanaDashboard.enabled=true"]);
    let maps = of_kind(&dashboard, "ConfigMap");
    let map = maps
        .iter()
        .find(|c| c["metadata"]["name"] == "palisade-dashboard")
        .expect("the dashboard's ConfigMap");
    assert_eq!(map["metadata"]["namespace"], chart::NAMESPACE);
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(dashboards(&dashboard)[0]["title"], "Palisade");
    assert!(of_kind(&dashboard, "PrometheusRule").is_empty());
}

#[test]
fn the_monitoring_values_reach_the_objects() {
    let objects = render(&[
        "--set",
        ALL_ON,
        "--set",
        "metrics.serviceMonitor.labels.release=kps,metrics.prometheusRule.labels.release=kps",
        "--set",
        "metrics.prometheusRule.certificateExpiryDays=30,metrics.prometheusRule.nodeNotEnforcing=false",
        "--set",
        "metrics.grafanaDashboard.namespace=monitoring,metrics.grafanaDashboard.annotations.grafana_folder=Palisade",
        "--set",
        "metrics.grafanaDashboard.labels.grafana_dashboard=palisade",
    ]);
    for m in of_kind(&objects, "PodMonitor") {
        assert_eq!(m["metadata"]["labels"]["release"], "kps", "{m}");
        assert_eq!(
            m["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["targetLabel"],
            "node"
        );
    }
    let rule = of_kind(&objects, "PrometheusRule")[0];
    assert_eq!(rule["metadata"]["labels"]["release"], "kps");
    let alerts = alerts(&objects);
    assert!(!alerts.iter().any(|(a, _)| a == "PalisadeNodeNotEnforcing"));
    let (_, expiry) = alerts
        .iter()
        .find(|(a, _)| a == "PalisadeWebhookCertificateExpiring")
        .expect("the certificate alert");
    assert!(expiry.ends_with("- time() < 30 * 86400"), "{expiry}");
    let map = of_kind(&objects, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "palisade-dashboard")
        .expect("the dashboard's ConfigMap");
    assert_eq!(map["metadata"]["namespace"], "monitoring");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "palisade");
    assert_eq!(map["metadata"]["annotations"]["grafana_folder"], "Palisade");

    // A wrong type is refused by the schema.
    let refused = chart::template(&["--set", "metrics.prometheusRule.certificateExpiryDays=soon"]);
    assert!(refused.is_err());
}

/// The series names a component's registry exports, from its own encoding: a counter `x` is
/// `x_total`, a histogram `x_bucket`, `x_sum` and `x_count`, a gauge `x`.
fn exported(encoded: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in encoded.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            out.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#')
            && let Some(name) = line.split(['{', ' ']).next()
            && !name.is_empty()
        {
            out.insert(name.to_string());
        }
    }
    out
}

/// The metric names a PromQL expression selects: identifiers that are not functions, keywords,
/// label names or values, durations or numbers.
fn metric_names(expr: &str) -> Vec<String> {
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2"];
    let chars: Vec<char> = expr.chars().collect();
    let skip_past = |from: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        let mut i = from;
        while i < chars.len() {
            match chars[i] {
                '"' | '\'' | '`' => {
                    let q = chars[i];
                    i += 1;
                    while i < chars.len() && chars[i] != q {
                        i += if chars[i] == '\\' { 2 } else { 1 };
                    }
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_past(i, '{', '}');
        } else if c == '[' {
            i = skip_past(i, '[', ']');
        } else if c == '"' || c == '\'' || c == '`' {
            i = skip_past(i, c, c);
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            // An aggregation with its grouping first: `sum by (le) (...)`.
            let following: String = chars[next..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .collect();
            let grouped = following == "by" || following == "without";
            if grouped {
                continue;
            }
            if LABEL_LISTS.contains(&word.as_str()) {
                if called {
                    i = skip_past(next, '(', ')');
                }
            } else if !called && !KEYWORDS.contains(&word.as_str()) {
                out.push(word);
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names(
            r#"sum by (namespace, pod) (increase(a_total{result="error", x=~"b|c"}[15m])) > 0 unless on (pod) sum without (le) (b_count offset 5m) > 1e3"#
        ),
        ["a_total", "b_count"]
    );
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval]))) - time() < 14 * 86400 or absent(y)"
        ),
        ["x_bucket", "y"]
    );
}

/// Every series the three components export. A family with labels is encoded only once it has
/// a member, so each is given one through the component's own recording calls.
fn registered() -> BTreeSet<String> {
    use palisade_policy::checks::{CheckId, Finding, Severity};
    let took = Duration::from_millis(3);
    let webhook = palisade_webhook::metrics::Metrics::default();
    webhook.observe(
        &palisade_webhook::review::Decision {
            review: serde_json::Value::Null,
            allowed: false,
            object: Some("x/y".into()),
            kind: "NetworkPolicy",
            findings: vec![Finding {
                check: CheckId::Enforcement,
                severity: Severity::Deny,
                summary: String::new(),
                message: String::new(),
            }],
            skipped: Vec::new(),
            dry_run: false,
            settle: None,
        },
        took,
    );
    webhook.bad_request("x");
    webhook.set_cache("pods", 1);
    let operator = palisade_operator::metrics::Metrics::default();
    operator.reconciled("namespace", false, took);
    operator.set_covered("default", 1);
    let enforcer = palisade_enforcer::metrics::Metrics::default();
    enforcer.synced("error", took);
    enforcer.event_to_rule(took);
    enforcer.audit(&[("x/y: audit".to_string(), 1)].into());
    let mut known = exported(&webhook.render());
    known.extend(exported(&operator.render()));
    known.extend(exported(&enforcer.render()));
    known
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_query_is_exported() {
    let known = registered();
    // The registries really were read (a renamed prefix would empty them).
    for sure in [
        "palisade_webhook_reviews_total",
        "palisade_operator_leader",
        "palisade_operator_reconciles_total",
        "palisade_enforcer_syncs_total",
        "palisade_enforcer_audit_would_drop",
        "palisade_enforcer_event_to_rule_seconds_bucket",
    ] {
        assert!(known.contains(sure), "{sure} not in {known:?}");
    }
    assert!(!known.contains("palisade_enforcer_sync_total"));

    let objects = render(&["--set", ALL_ON]);
    let mut queried: Vec<(String, String)> = alerts(&objects)
        .into_iter()
        .map(|(alert, expr)| (format!("alert {alert}"), expr))
        .collect();
    let dashboards = dashboards(&objects);
    assert_eq!(dashboards.len(), 1);
    queried.extend(
        queries(&dashboards[0])
            .into_iter()
            .map(|q| ("the dashboard".to_string(), q)),
    );
    assert!(queried.len() > 20, "{queried:?}");
    let mut unknown = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr) in &queried {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place}: no metric in {expr}");
        for name in names {
            if !known.contains(&name) {
                unknown.push(format!("{place}: {name} (in {expr})"));
            }
            used.insert(name);
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics no component exports:\n{}\nexported: {known:?}",
        unknown.join("\n")
    );
    // What the dashboard promises to show.
    for needed in [
        "palisade_enforcer_enforcing",
        "palisade_enforcer_syncs_total",
        "palisade_enforcer_event_to_rule_seconds_bucket",
        "palisade_enforcer_audit_would_drop",
        "palisade_webhook_serving_certificate_expiry_timestamp_seconds",
        "palisade_operator_webhook_available",
    ] {
        assert!(used.contains(needed), "{needed} is not queried");
    }
}
