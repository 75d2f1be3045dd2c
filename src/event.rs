//! The rotation event Secrets Manager sends, parsed at the edge into a typed step.
//!
//! `aws_lambda_events`' type lacks `RotationToken`, so the event is read from raw JSON here
//! and the token is carried on to `PutSecretValue`.

use std::fmt;

use serde_json::Value;

use crate::error::Error;

/// One of the four rotation steps, serialised as Secrets Manager names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Step {
    /// Create the new key and store the pending credentials.
    #[serde(rename = "createSecret")]
    Create,
    /// Confirm the key is in IAM and Active.
    #[serde(rename = "setSecret")]
    Set,
    /// Prove the pending credentials log in at SES.
    #[serde(rename = "testSecret")]
    Test,
    /// Promote the pending version and retire the old key.
    #[serde(rename = "finishSecret")]
    Finish,
}

impl Step {
    /// The step name as Secrets Manager writes it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "createSecret",
            Self::Set => "setSecret",
            Self::Test => "testSecret",
            Self::Finish => "finishSecret",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated rotation event.
#[derive(Clone, PartialEq, Eq)]
pub struct RotationEvent {
    /// Which step.
    pub step: Step,
    /// The secret's ARN or name.
    pub secret_id: String,
    /// The version id of the rotation (`ClientRequestToken`).
    pub token: String,
    /// Secrets Manager's `RotationToken`, passed on to `PutSecretValue`. Not a secret value,
    /// but it is an authorisation token for this rotation, so it is never logged.
    pub rotation_token: Option<String>,
}

impl fmt::Debug for RotationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotationEvent")
            .field("step", &self.step)
            .field("secret_id", &self.secret_id)
            .field("token", &self.token)
            .field(
                "rotation_token",
                &self.rotation_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

fn field<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Result<&'a str, Error> {
    match obj.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(Error::InvalidEvent(format!("\"{name}\" is empty"))),
        Some(_) => Err(Error::InvalidEvent(format!("\"{name}\" is not a string"))),
        None => Err(Error::InvalidEvent(format!("\"{name}\" is missing"))),
    }
}

impl RotationEvent {
    /// Parses the raw invocation payload.
    ///
    /// # Errors
    /// [`Error::InvalidEvent`] naming the missing or mistyped field, or [`Error::UnknownStep`].
    pub fn parse(payload: &Value) -> Result<Self, Error> {
        let Value::Object(obj) = payload else {
            return Err(Error::InvalidEvent(
                "the payload is not a JSON object".into(),
            ));
        };
        let step = match field(obj, "Step")? {
            "createSecret" => Step::Create,
            "setSecret" => Step::Set,
            "testSecret" => Step::Test,
            "finishSecret" => Step::Finish,
            other => return Err(Error::UnknownStep(other.chars().take(64).collect())),
        };
        // Lengths as Secrets Manager's API defines them: a longer value is no secret id or
        // token of it, and must not travel on into calls and error messages.
        let secret_id = field(obj, "SecretId")?.to_owned();
        if secret_id.chars().count() > 2048 {
            return Err(Error::InvalidEvent(
                "\"SecretId\" is longer than 2048 characters (the longest secret ARN or name)"
                    .into(),
            ));
        }
        let token = field(obj, "ClientRequestToken")?.to_owned();
        if !(32..=64).contains(&token.chars().count()) {
            return Err(Error::InvalidEvent(
                "\"ClientRequestToken\" must be 32 to 64 characters (a rotation's version id)"
                    .into(),
            ));
        }
        let rotation_token = match obj.get("RotationToken") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(Error::InvalidEvent(
                    "\"RotationToken\" is not a string".into(),
                ));
            }
        };
        Ok(Self {
            step,
            secret_id,
            token,
            rotation_token,
        })
    }
}

#[cfg(test)]
mod tests {
    const TOKEN: &str = "0b7c3a64-1b1e-4c39-9c39-6f1f0b9b9f0e";
    use super::*;
    use serde_json::json;

    #[test]
    fn refuses_lengths_secrets_manager_never_sends() {
        let long = "s".repeat(2049);
        let e = RotationEvent::parse(
            &json!({"Step": "setSecret", "SecretId": long, "ClientRequestToken": TOKEN}),
        )
        .unwrap_err();
        assert_eq!(e.error_type(), "InvalidEvent");
        assert!(!e.to_string().contains(&long));
        for token in ["t".repeat(31), "t".repeat(65)] {
            let e = RotationEvent::parse(
                &json!({"Step": "setSecret", "SecretId": "s", "ClientRequestToken": token}),
            )
            .unwrap_err();
            assert!(e.to_string().contains("32 to 64"), "{e}");
        }
        let edge = RotationEvent::parse(
            &json!({"Step": "setSecret", "SecretId": "s".repeat(2048), "ClientRequestToken": "t".repeat(32)}),
        );
        assert!(edge.is_ok());
    }

    #[test]
    fn parses_all_steps_and_rotation_token() {
        for (name, step) in [
            ("createSecret", Step::Create),
            ("setSecret", Step::Set),
            ("testSecret", Step::Test),
            ("finishSecret", Step::Finish),
        ] {
            let e = RotationEvent::parse(&json!({"Step": name, "SecretId": "arn:x", "ClientRequestToken": TOKEN, "RotationToken": "r"})).unwrap();
            assert_eq!(e.step, step);
            assert_eq!(e.step.as_str(), name);
            assert_eq!(e.secret_id, "arn:x");
            assert_eq!(e.token, TOKEN);
            assert_eq!(e.rotation_token.as_deref(), Some("r"));
        }
        let e = RotationEvent::parse(
            &json!({"Step": "setSecret", "SecretId": "s", "ClientRequestToken": TOKEN}),
        )
        .unwrap();
        assert_eq!(e.rotation_token, None);
    }

    #[test]
    fn the_sample_events_parse() {
        for (file, step) in [
            ("createSecret", Step::Create),
            ("setSecret", Step::Set),
            ("testSecret", Step::Test),
            ("finishSecret", Step::Finish),
        ] {
            let path = format!("{}/events/{file}.json", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).expect(&path);
            let value: Value = serde_json::from_str(&text).expect(&path);
            let e = RotationEvent::parse(&value).expect(&path);
            assert_eq!(e.step, step, "{path}");
            assert!(e.rotation_token.is_some(), "{path}");
        }
    }

    #[test]
    fn debug_hides_the_rotation_token() {
        let e = RotationEvent::parse(&json!({"Step": "setSecret", "SecretId": "s", "ClientRequestToken": TOKEN, "RotationToken": "very-private-token"})).unwrap();
        let shown = format!("{e:?}");
        assert!(!shown.contains("very-private-token"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn refuses_malformed_events() {
        for (payload, needle, kind) in [
            (json!([1]), "not a JSON object", "InvalidEvent"),
            (
                json!({"SecretId": "s", "ClientRequestToken": TOKEN}),
                "\"Step\" is missing",
                "InvalidEvent",
            ),
            (
                json!({"Step": "rotate", "SecretId": "s", "ClientRequestToken": TOKEN}),
                "\"rotate\"",
                "UnknownStep",
            ),
            (
                json!({"Step": "createSecret", "ClientRequestToken": TOKEN}),
                "\"SecretId\" is missing",
                "InvalidEvent",
            ),
            (
                json!({"Step": "createSecret", "SecretId": 5, "ClientRequestToken": TOKEN}),
                "\"SecretId\" is not a string",
                "InvalidEvent",
            ),
            (
                json!({"Step": "createSecret", "SecretId": "s", "ClientRequestToken": ""}),
                "\"ClientRequestToken\" is empty",
                "InvalidEvent",
            ),
            (
                json!({"Step": "createSecret", "SecretId": "s", "ClientRequestToken": TOKEN, "RotationToken": 1}),
                "RotationToken",
                "InvalidEvent",
            ),
        ] {
            let e = RotationEvent::parse(&payload).unwrap_err();
            assert_eq!(e.error_type(), kind, "{payload}");
            assert!(e.to_string().contains(needle), "{payload}: {e}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                ".{0,20}".prop_map(Value::String),
                prop::sample::select(vec![
                    "createSecret",
                    "setSecret",
                    "testSecret",
                    "finishSecret",
                    "Step",
                    "SecretId"
                ])
                .prop_map(|s| Value::String(s.to_owned())),
            ];
            leaf.prop_recursive(3, 24, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(
                        prop::sample::select(vec![
                            "Step",
                            "SecretId",
                            "ClientRequestToken",
                            "RotationToken",
                            "x"
                        ]),
                        inner,
                        0..5,
                    )
                    .prop_map(|m| Value::Object(
                        m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                    )),
                ]
            })
        }

        proptest! {
            /// Any payload either parses into a complete event or is refused with one of the two
            /// event error types; nothing panics.
            #[test]
            fn any_payload_parses_or_is_refused(v in json_value()) {
                match RotationEvent::parse(&v) {
                    Ok(e) => {
                        prop_assert!(!e.secret_id.trim().is_empty());
                        prop_assert!(!e.token.trim().is_empty());
                    }
                    Err(e) => prop_assert!(matches!(e.error_type(), "InvalidEvent" | "UnknownStep")),
                }
            }
        }
    }
}
