//! `contrib/`: the Grafana dashboard and the Prometheus alert rules query only metrics the
//! gateway exports, read from a real gateway's `/metrics` (every family is declared there,
//! with or without series yet).

use std::collections::BTreeSet;

use crate::support::*;

/// The metric names (`mimi_...`) a PromQL expression uses, without the histogram suffixes.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in expr.match_indices("mimi_") {
        let name: String = expr[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name)
            .to_owned();
        names.insert(family);
    }
    names
}

fn exprs(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("expr", serde_json::Value::String(expr)) => found.push(expr.clone()),
                    _ => exprs(inner, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| exprs(item, found)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alerts_query_only_exported_metrics() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let exported: BTreeSet<String> = admin_get(harness.admin, "/metrics")
        .await
        .1
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(exported.contains("mimi_requests_total"), "{exported:?}");

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("grafana/mimi-gateway.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 10, "{queries:?}");
    let alerts = std::fs::read_to_string(root.join("prometheus/mimi-gateway-alerts.yml")).unwrap();
    queries.extend(
        alerts
            .lines()
            .filter_map(|line| line.trim().strip_prefix("expr:"))
            .map(str::to_owned),
    );
    let mut used = BTreeSet::new();
    for query in &queries {
        used.extend(metrics_in(query));
    }
    // What the issue asks the dashboard to show is there.
    for wanted in [
        "mimi_requests_total",
        "mimi_request_duration_seconds",
        "mimi_auth_failures_total",
        "mimi_store_errors_total",
        "mimi_outbound_queue_depth",
    ] {
        assert!(used.contains(wanted), "the dashboard shows {wanted}");
    }
    let missing: Vec<_> = used.difference(&exported).collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
}
