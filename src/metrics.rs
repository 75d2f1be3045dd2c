//! One CloudWatch Embedded Metric Format (EMF) line per invocation: a structured log line
//! that CloudWatch Logs turns into metrics, with no CloudWatch API call and no extra network
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>).
//!
//! Namespace `SesSmtpRotator`, dimension `Step`; metrics `Duration` (ms), `Success` (0/1), and
//! for testSecret `AuthAttempts` and `PropagationSeconds` (the new key's creation to the
//! first 235). No secret and no key id is a dimension or a property: the line carries the
//! step, the numbers and the function's name only.
//!
//! Written with serde_json (already a dependency) rather than a metrics crate. Measured on
//! this machine with the release profile, against a serde_json-only baseline printing the same
//! line: awslabs' `metrique` 0.1.33 (EMF writer) added 101 KB, 66 crates (44 new to this
//! project) and ~55 s of CPU to a cold build; `metrics_cloudwatch_embedded` 0.10.0 added
//! 94–111 KB and 3–12 crates (its `lambda` feature brings lambda_http and aws_lambda_events),
//! and keeps global per-label state, so a warm sandbox re-emits the previous step's gauges
//! and drops zero counters. Neither changed start-up measurably (< 0.1 ms). One fixed line
//! needs no aggregation.

use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "SesSmtpRotator";

/// What one invocation measured.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationMetrics {
    /// The step (`createSecret`, …), or `invalid` for an event that named none.
    pub step: String,
    /// Wall time of the invocation in milliseconds.
    pub duration_ms: u64,
    /// Whether the step succeeded.
    pub success: bool,
    /// testSecret: how many AUTH attempts were made.
    pub auth_attempts: Option<u32>,
    /// testSecret: seconds from the new key's creation to the first accepted login.
    pub propagation_seconds: Option<f64>,
}

impl InvocationMetrics {
    /// The EMF line (one JSON object, no newline), stamped `timestamp_ms` (epoch ms).
    #[must_use]
    pub fn to_emf(&self, timestamp_ms: u64, function_name: Option<&str>) -> String {
        let mut metrics = vec![
            json!({"Name": "Duration", "Unit": "Milliseconds"}),
            json!({"Name": "Success", "Unit": "None"}),
        ];
        let mut line = Map::new();
        line.insert("Step".into(), Value::String(self.step.clone()));
        line.insert("Duration".into(), json!(self.duration_ms));
        line.insert("Success".into(), json!(u8::from(self.success)));
        if let Some(a) = self.auth_attempts {
            metrics.push(json!({"Name": "AuthAttempts", "Unit": "Count"}));
            line.insert("AuthAttempts".into(), json!(a));
        }
        if let Some(p) = self
            .propagation_seconds
            .filter(|p| p.is_finite() && *p >= 0.0)
        {
            metrics.push(json!({"Name": "PropagationSeconds", "Unit": "Seconds"}));
            line.insert(
                "PropagationSeconds".into(),
                json!((p * 1000.0).round() / 1000.0),
            );
        }
        if let Some(f) = function_name {
            line.insert("FunctionName".into(), Value::String(f.to_owned()));
        }
        finish(line, timestamp_ms, &json!([["Step"]]), metrics)
    }
}

/// Completes an EMF line: the `_aws` member (timestamp, namespace, dimension sets, metric
/// definitions) added to the line's members, as one JSON text.
#[must_use]
pub fn finish(
    mut line: Map<String, Value>,
    timestamp_ms: u64,
    dimensions: &Value,
    metrics: Vec<Value>,
) -> String {
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimensions,
                "Metrics": metrics,
            }],
        }),
    );
    Value::Object(line).to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Checks the EMF specification's rules on a line: `_aws` with an integer Timestamp and
    /// CloudWatchMetrics directives whose every dimension and metric name is a member of the
    /// root of the right type.
    pub(crate) fn assert_valid_emf(line: &str) -> Value {
        let v: Value = serde_json::from_str(line).expect("JSON");
        let aws = &v["_aws"];
        assert!(aws["Timestamp"].is_u64(), "{line}");
        let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
        assert!(!directives.is_empty());
        for d in directives {
            assert!(d["Namespace"].as_str().is_some_and(|n| !n.is_empty()));
            for set in d["Dimensions"].as_array().expect("dimensions") {
                let set = set.as_array().expect("dimension set");
                assert!(set.len() <= 30);
                for name in set {
                    let name = name.as_str().expect("dimension name");
                    assert!(v[name].is_string(), "dimension {name} missing: {line}");
                }
            }
            for m in d["Metrics"].as_array().expect("metrics") {
                let name = m["Name"].as_str().expect("metric name");
                assert!(v[name].is_number(), "metric {name} missing: {line}");
                assert!(
                    ["Milliseconds", "Seconds", "Count", "None",]
                        .contains(&m["Unit"].as_str().unwrap_or("None")),
                    "{line}"
                );
            }
        }
        v
    }

    #[test]
    fn a_test_secret_line_carries_every_metric() {
        let m = InvocationMetrics {
            step: "testSecret".into(),
            duration_ms: 1234,
            success: true,
            auth_attempts: Some(3),
            propagation_seconds: Some(2.5),
        };
        let line = m.to_emf(1_800_000_000_000, Some("rotator"));
        assert!(!line.contains('\n'));
        let v = assert_valid_emf(&line);
        assert_eq!(v["Step"], "testSecret");
        assert_eq!(v["Duration"], 1234);
        assert_eq!(v["Success"], 1);
        assert_eq!(v["AuthAttempts"], 3);
        assert_eq!(v["PropagationSeconds"], 2.5);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .map(Vec::len),
            Some(4)
        );
    }

    #[test]
    fn other_steps_carry_duration_and_success_only() {
        let m = InvocationMetrics {
            step: "createSecret".into(),
            duration_ms: 7,
            success: false,
            auth_attempts: None,
            propagation_seconds: Some(f64::NAN),
        };
        let v = assert_valid_emf(&m.to_emf(1, None));
        assert_eq!(v["Success"], 0);
        assert!(v.get("AuthAttempts").is_none() && v.get("PropagationSeconds").is_none());
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
    }
}
