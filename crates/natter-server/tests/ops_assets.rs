//! The operator's files agree with the metrics the server exports: every `natter_*` metric
//! the Grafana dashboard and the Prometheus alert rules use is one the server registers, and
//! `docs/operations.md` lists every one it registers.

use std::collections::BTreeSet;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Every metric the server can export: natter-core's, the Redis bus's and the SQLite store's
/// names.
fn exported() -> BTreeSet<&'static str> {
    use natter_bus_redis::telemetry as redis;
    let mut all: BTreeSet<&str> = natter_core::telemetry::ALL.iter().copied().collect();
    all.extend([redis::REDIS_OPS, redis::REDIS_ERRORS, redis::BUS_LAG]);
    all.insert(natter_store_sqlite::telemetry::APPENDS_PER_COMMIT);
    all
}

/// The workspace's crate names as Rust spells them (`natter_core`), which log filters such
/// as `NATTER_LOG=natter_core=debug` name: not metrics.
fn crate_names() -> BTreeSet<String> {
    std::fs::read_dir(repo().join("crates"))
        .expect("the crates folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().replace('-', "_"))
        .collect()
}

/// The `natter_…` identifiers in `text`, crate names aside.
fn metric_names(text: &str) -> BTreeSet<String> {
    let crates = crate_names();
    identifiers(text)
        .into_iter()
        .filter(|n| !crates.contains(n))
        .collect()
}

/// The `natter_…` identifiers in `text`.
fn identifiers(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("natter_") {
        // Part of a longer identifier (`x_natter_y`) is not a metric name.
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    out
}

/// A histogram's series name back to the metric's (`…_seconds_bucket` → `…_seconds`; the
/// histograms without a unit, `natter_csat_rating` and `natter_sqlite_appends_per_commit`,
/// too).
fn base_name(series: &str) -> &str {
    let unitless = [
        natter_core::telemetry::CSAT_RATING,
        natter_store_sqlite::telemetry::APPENDS_PER_COMMIT,
    ];
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = series.strip_suffix(suffix)
            && (base.ends_with("_seconds") || unitless.contains(&base))
        {
            return base;
        }
    }
    series
}

/// Every string in a JSON document, keys aside.
fn json_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

#[test]
fn the_name_list_holds_every_name_defined() {
    // A metric defined in telemetry.rs but left out of ALL would escape the checks below.
    let defined = metric_names(&read("crates/natter-core/src/telemetry.rs"));
    let listed: BTreeSet<String> = natter_core::telemetry::ALL
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(defined, listed);
}

#[test]
fn the_dashboard_uses_only_exported_metrics() {
    let dashboard: serde_json::Value = serde_json::from_str(&read("deploy/grafana-dashboard.json"))
        .expect("the dashboard is JSON");
    let mut strings = Vec::new();
    json_strings(&dashboard, &mut strings);
    let used: BTreeSet<String> = strings.iter().flat_map(|s| metric_names(s)).collect();
    let exported = exported();
    let unknown: Vec<&String> = used
        .iter()
        .filter(|n| !exported.contains(base_name(n)))
        .collect();
    assert!(
        unknown.is_empty(),
        "the dashboard uses metrics the server does not export: {unknown:?}"
    );
    // It shows each of them (a panel for a new metric is not forgotten).
    let shown: BTreeSet<&str> = used.iter().map(|n| base_name(n)).collect();
    let missing: Vec<&&str> = exported.iter().filter(|n| !shown.contains(**n)).collect();
    assert!(missing.is_empty(), "no dashboard panel shows {missing:?}");
}

#[test]
fn the_alert_rules_use_only_exported_metrics() {
    let rules = read("deploy/prometheus-alerts.yml");
    let used = metric_names(&rules);
    assert!(used.len() >= 5, "too few metrics in the rules: {used:?}");
    let exported = exported();
    let unknown: Vec<&String> = used
        .iter()
        .filter(|n| !exported.contains(base_name(n)))
        .collect();
    assert!(
        unknown.is_empty(),
        "the alert rules use metrics the server does not export: {unknown:?}"
    );
}

#[test]
fn operations_md_documents_every_exported_metric() {
    let doc = read("docs/operations.md");
    let named = metric_names(&doc);
    let missing: Vec<&str> = exported()
        .into_iter()
        .filter(|n| !named.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/operations.md does not document {missing:?}"
    );
    let unknown: Vec<&String> = named
        .iter()
        .filter(|n| !exported().contains(base_name(n)))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/operations.md names metrics the server does not export: {unknown:?}"
    );
}

#[test]
fn metric_names_are_found_in_text() {
    assert_eq!(
        metric_names(
            "rate(natter_turns_total{x=\"y\"}[5m]) / x_natter_no + natter_a_bucket natter_core"
        ),
        ["natter_turns_total", "natter_a_bucket"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert_eq!(
        base_name("natter_bus_lag_seconds_bucket"),
        "natter_bus_lag_seconds"
    );
    assert_eq!(base_name("natter_turns_total"), "natter_turns_total");
}
