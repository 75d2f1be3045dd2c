//! The Secrets Manager and IAM calls the rotation steps make, with SDK errors turned into the
//! crate's [`Error`] (modelled errors branched on, everything else kept as a printed chain).
//!
//! Clients are built once per process from the SDK's standard chain (`AWS_REGION`, credentials,
//! `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL_IAM`) and cloned
//! cheaply into each invocation.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_iam::types::StatusType;
use aws_smithy_types::DateTime;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::error::Error;
use crate::password::SecretAccessKey;

/// Stage names.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// Stage names.
pub const AWSPENDING: &str = "AWSPENDING";
/// Stage names.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// User tag that createSecret writes just before CreateAccessKey: `<token> <epoch seconds>`.
/// It lets a retried bootstrap recognise the key a failed attempt made (whose id it never
/// learned) without ever mistaking someone else's key for it.
pub const CREATING_TAG: &str = "ses-smtp-rotator:creating-key";

/// User tag naming the one secret whose rotation owns the user's keys. Written by the first
/// rotation; a rotation of another secret refuses to touch the user's keys.
pub const OWNER_TAG: &str = "ses-smtp-rotator:secret";

/// The two clients the steps use.
#[derive(Debug, Clone)]
pub struct Clients {
    /// Secrets Manager.
    pub secrets: aws_sdk_secretsmanager::Client,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
}

impl Clients {
    /// Loads the SDK configuration (the expensive part) once and builds both clients.
    ///
    /// Every call is bounded (a hung call would otherwise run until Lambda kills the function
    /// without a word): 5 s to connect, 10 s per attempt, 30 s per operation with retries.
    pub async fn from_env() -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(10))
            .operation_timeout(Duration::from_secs(30))
            .build();
        let conf = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeouts)
            .load()
            .await;
        Self::from_conf(&conf)
    }

    /// Builds both clients from a loaded configuration.
    #[must_use]
    pub fn from_conf(conf: &SdkConfig) -> Self {
        Self {
            secrets: aws_sdk_secretsmanager::Client::new(conf),
            iam: aws_sdk_iam::Client::new(conf),
        }
    }
}

/// What DescribeSecret tells about a secret.
#[derive(Debug, Clone)]
pub struct SecretState {
    /// The secret's ARN.
    pub arn: String,
    /// Whether rotation is on (absent counts as off).
    pub rotation_enabled: bool,
    /// Version id → its stages.
    pub stages: HashMap<String, Vec<String>>,
}

impl SecretState {
    /// The version that holds `stage`, if any.
    #[must_use]
    pub fn version_with(&self, stage: &str) -> Option<&str> {
        self.stages
            .iter()
            .find(|(_, s)| s.iter().any(|x| x == stage))
            .map(|(v, _)| v.as_str())
    }

    /// Whether `version` holds `stage`.
    #[must_use]
    pub fn has_stage(&self, version: &str, stage: &str) -> bool {
        self.stages
            .get(version)
            .is_some_and(|s| s.iter().any(|x| x == stage))
    }
}

/// An IAM access key, as ListAccessKeys describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    /// Access key id.
    pub id: String,
    /// Active or not.
    pub active: bool,
    /// Creation time.
    pub created: Option<DateTime>,
}

/// What GetAccessKeyLastUsed tells about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    /// The IAM user that owns the key.
    pub owner: Option<String>,
    /// Whether the key was ever used to sign a request.
    pub ever_used: bool,
}

/// The bootstrap's "creating a key" marker: the rotation's token, the times (epoch seconds)
/// at which its attempts called CreateAccessKey, and the key ids those calls returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatingMarker {
    /// The rotation's ClientRequestToken.
    pub token: String,
    /// When each attempt was about to call CreateAccessKey (most recent last).
    pub times: Vec<i64>,
    /// Keys CreateAccessKey returned to this rotation.
    pub keys: Vec<String>,
}

impl CreatingMarker {
    /// How long after a recorded time a key whose id we never learned (lost response) still
    /// counts as that attempt's: CreateAccessKey's own 10 s attempt limit plus slack.
    pub const WINDOW_SECS: i64 = 15;
    /// Tolerated clock difference between this function and IAM.
    pub const SKEW_SECS: i64 = 2;
    /// Attempts and keys remembered (an IAM tag value holds 256 characters).
    const KEEP_TIMES: usize = 5;
    const KEEP_KEYS: usize = 3;

    /// Parses a tag value; `None` when it is not one of ours.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split_whitespace();
        let token = parts.next()?.to_owned();
        let (mut times, mut keys) = (Vec::new(), Vec::new());
        for p in parts {
            match p.strip_prefix("k:") {
                Some(k) => keys.push(k.to_owned()),
                None => times.push(p.parse::<i64>().ok()?),
            }
        }
        (!times.is_empty()).then_some(Self { token, times, keys })
    }

    /// The tag value.
    #[must_use]
    pub fn to_value(&self) -> String {
        let mut v = self.token.clone();
        for t in &self.times {
            v.push(' ');
            v.push_str(&t.to_string());
        }
        for k in &self.keys {
            v.push_str(" k:");
            v.push_str(k);
        }
        v
    }

    /// The marker for `token` with one more attempt at `now` (a marker of another token is
    /// replaced).
    #[must_use]
    pub fn with_attempt(previous: Option<Self>, token: &str, now: i64) -> Self {
        let mut m = previous.filter(|m| m.token == token).unwrap_or(Self {
            token: token.to_owned(),
            times: Vec::new(),
            keys: Vec::new(),
        });
        m.times.push(now);
        let skip = m.times.len().saturating_sub(Self::KEEP_TIMES);
        m.times.drain(..skip);
        m
    }

    /// The marker with a key CreateAccessKey returned.
    #[must_use]
    pub fn with_key(mut self, key_id: &str) -> Self {
        self.keys.push(key_id.to_owned());
        let skip = self.keys.len().saturating_sub(Self::KEEP_KEYS);
        self.keys.drain(..skip);
        self
    }

    /// Whether the marker names this key as one this rotation created.
    #[must_use]
    pub fn names(&self, token: &str, key_id: &str) -> bool {
        self.token == token && self.keys.iter().any(|k| k == key_id)
    }

    /// Whether a key created at `created` (IAM's one-second resolution) falls within one of
    /// this rotation's attempts.
    #[must_use]
    pub fn covers(&self, token: &str, created: i64) -> bool {
        self.token == token
            && self
                .times
                .iter()
                .any(|t| created >= t - Self::SKEW_SECS && created <= t + Self::WINDOW_SECS)
    }
}

/// The value of [`OWNER_TAG`] for a secret: its ARN, or a digest of it when too long for a tag.
#[must_use]
pub fn owner_tag_value(secret_arn: &str) -> String {
    use sha2::Digest;
    if secret_arn.len() <= 256 {
        return secret_arn.to_owned();
    }
    let digest = sha2::Sha256::digest(secret_arn.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn chain<E: std::error::Error>(e: &E) -> String {
    DisplayErrorContext(e).to_string()
}

/// Secrets Manager operations on one secret.
impl Clients {
    fn sm_err<E: std::error::Error>(op: &'static str, secret_id: &str, e: &E) -> Error {
        Error::SecretsManager {
            operation: op,
            secret_id: secret_id.to_owned(),
            detail: chain(e),
        }
    }

    /// DescribeSecret.
    ///
    /// # Errors
    /// [`Error::SecretNotFound`], or [`Error::SecretsManager`].
    pub async fn describe(&self, secret_id: &str) -> Result<SecretState, Error> {
        let out = self
            .secrets
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception())
                {
                    Error::SecretNotFound {
                        secret_id: secret_id.to_owned(),
                    }
                } else {
                    Self::sm_err("DescribeSecret", secret_id, &e)
                }
            })?;
        Ok(SecretState {
            arn: out.arn().unwrap_or(secret_id).to_owned(),
            rotation_enabled: out.rotation_enabled().unwrap_or(false),
            stages: out.version_ids_to_stages().cloned().unwrap_or_default(),
        })
    }

    /// GetSecretValue of a stage (and version). `Ok(None)` when that version has no value yet
    /// (Secrets Manager's empty AWSPENDING placeholder answers ResourceNotFound).
    ///
    /// # Errors
    /// [`Error::SecretsManager`] for anything but "no value".
    pub async fn get_value(
        &self,
        secret_id: &str,
        version_id: Option<&str>,
        stage: &str,
    ) -> Result<Option<String>, Error> {
        let res = self
            .secrets
            .get_secret_value()
            .secret_id(secret_id)
            .set_version_id(version_id.map(str::to_owned))
            .version_stage(stage)
            .send()
            .await;
        match res {
            Ok(out) => Ok(out.secret_string().map(str::to_owned)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(Self::sm_err("GetSecretValue", secret_id, &e)),
        }
    }

    /// PutSecretValue of the pending version for `token`.
    ///
    /// # Errors
    /// [`Error::SecretsManager`]; a `ResourceExistsException` means the version already holds
    /// a different value.
    pub async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        rotation_token: Option<&str>,
        secret_string: String,
    ) -> Result<(), Error> {
        self.secrets
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(token)
            .secret_string(secret_string)
            .version_stages(AWSPENDING)
            .set_rotation_token(rotation_token.map(str::to_owned))
            .send()
            .await
            .map_err(|e| Self::sm_err("PutSecretValue", secret_id, &e))?;
        Ok(())
    }

    /// Moves AWSCURRENT to `token`, removing it from `from` (Secrets Manager then labels
    /// `from` AWSPREVIOUS).
    ///
    /// # Errors
    /// [`Error::SecretsManager`].
    pub async fn move_current(
        &self,
        secret_id: &str,
        token: &str,
        from: Option<&str>,
    ) -> Result<(), Error> {
        self.secrets
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(AWSCURRENT)
            .move_to_version_id(token)
            .set_remove_from_version_id(from.map(str::to_owned))
            .send()
            .await
            .map_err(|e| Self::sm_err("UpdateSecretVersionStage", secret_id, &e))?;
        Ok(())
    }
}

/// IAM operations on the dedicated user's keys.
impl Clients {
    fn iam_err<E: std::error::Error>(op: &'static str, user: &str, e: &E) -> Error {
        Error::Iam {
            operation: op,
            iam_user: user.to_owned(),
            detail: chain(e),
        }
    }

    /// An error of a call about the user itself: NoSuchEntity means the user does not exist.
    fn user_err<E, R>(op: &'static str, user: &str, e: &aws_sdk_iam::error::SdkError<E, R>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        if e.as_service_error()
            .is_some_and(|s| s.code() == Some("NoSuchEntity"))
        {
            Error::NoSuchUser {
                iam_user: user.to_owned(),
            }
        } else {
            Self::iam_err(op, user, e)
        }
    }

    /// ListAccessKeys of a user.
    ///
    /// # Errors
    /// [`Error::NoSuchUser`] or [`Error::Iam`].
    pub async fn list_keys(&self, user: &str) -> Result<Vec<KeyInfo>, Error> {
        let keys = self
            .iam
            .list_access_keys()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Self::user_err("ListAccessKeys", user, &e))?;
        Ok(keys
            .iter()
            .filter_map(|m| {
                Some(KeyInfo {
                    id: m.access_key_id()?.to_owned(),
                    active: m.status() == Some(&StatusType::Active),
                    created: m.create_date().copied(),
                })
            })
            .collect())
    }

    /// Who owns an access key and whether it was ever used (GetAccessKeyLastUsed); `None` if
    /// IAM does not know the key or will not say (a role scoped to `iam_user`, as the SAM
    /// template makes it, gets AccessDenied for another user's key).
    ///
    /// # Errors
    /// [`Error::Iam`].
    pub async fn key_usage(&self, key_id: &str, user: &str) -> Result<Option<KeyUsage>, Error> {
        match self
            .iam
            .get_access_key_last_used()
            .access_key_id(key_id)
            .send()
            .await
        {
            Ok(out) => Ok(Some(KeyUsage {
                owner: out.user_name().map(str::to_owned),
                ever_used: out
                    .access_key_last_used()
                    .is_some_and(|u| u.last_used_date().is_some()),
            })),
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    matches!(s.meta().code(), Some("NoSuchEntity" | "AccessDenied"))
                }) =>
            {
                Ok(None)
            }
            Err(e) => Err(Self::iam_err("GetAccessKeyLastUsed", user, &e)),
        }
    }

    /// The user's tags.
    ///
    /// # Errors
    /// [`Error::Iam`].
    pub async fn user_tags(&self, user: &str) -> Result<HashMap<String, String>, Error> {
        let tags = self
            .iam
            .list_user_tags()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Self::user_err("ListUserTags", user, &e))?;
        Ok(tags
            .into_iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect())
    }

    /// Sets one tag on the user.
    ///
    /// # Errors
    /// [`Error::Iam`].
    pub async fn tag_user(&self, user: &str, key: &str, value: &str) -> Result<(), Error> {
        let tag = aws_sdk_iam::types::Tag::builder()
            .key(key)
            .value(value)
            .build()
            .map_err(|e| Self::iam_err("TagUser", user, &e))?;
        self.iam
            .tag_user()
            .user_name(user)
            .tags(tag)
            .send()
            .await
            .map_err(|e| Self::iam_err("TagUser", user, &e))?;
        Ok(())
    }

    /// Removes one tag from the user.
    ///
    /// # Errors
    /// [`Error::Iam`].
    pub async fn untag_user(&self, user: &str, key: &str) -> Result<(), Error> {
        self.iam
            .untag_user()
            .user_name(user)
            .tag_keys(key)
            .send()
            .await
            .map_err(|e| Self::iam_err("UntagUser", user, &e))?;
        Ok(())
    }

    /// CreateAccessKey with the SDK's automatic retries OFF for this call: a retry after a lost
    /// response would mint a second key. Returns the key id and its secret (kept in memory only).
    ///
    /// # Errors
    /// [`Error::Iam`].
    pub async fn create_key(&self, user: &str) -> Result<(String, SecretAccessKey), Error> {
        let out = self
            .iam
            .create_access_key()
            .user_name(user)
            .customize()
            .config_override(
                aws_sdk_iam::config::Builder::default().retry_config(RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(|e| Self::iam_err("CreateAccessKey", user, &e))?;
        let key = out.access_key().ok_or_else(|| Error::Iam {
            operation: "CreateAccessKey",
            iam_user: user.to_owned(),
            detail: "the response has no access key".into(),
        })?;
        let secret = SecretAccessKey::new(key.secret_access_key()).map_err(|e| Error::Iam {
            operation: "CreateAccessKey",
            iam_user: user.to_owned(),
            detail: format!("the new secret access key is unusable: {e}"),
        })?;
        Ok((key.access_key_id().to_owned(), secret))
    }

    /// Marks a key Inactive. A key already gone is fine.
    ///
    /// # Errors
    /// [`Error::Iam`].
    pub async fn deactivate_key(&self, user: &str, key_id: &str) -> Result<(), Error> {
        match self
            .iam
            .update_access_key()
            .user_name(user)
            .access_key_id(key_id)
            .status(StatusType::Inactive)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(Self::iam_err("UpdateAccessKey", user, &e)),
        }
    }

    /// Deletes a key. A key already gone is fine.
    ///
    /// # Errors
    /// [`Error::Iam`].
    pub async fn delete_key(&self, user: &str, key_id: &str) -> Result<(), Error> {
        match self
            .iam
            .delete_access_key()
            .user_name(user)
            .access_key_id(key_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(Self::iam_err("DeleteAccessKey", user, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CreatingMarker, owner_tag_value};

    #[test]
    fn marker_round_trips_and_fits_a_tag() {
        let mut m = CreatingMarker::with_attempt(
            None,
            "0b7c3a64-1b1e-4c39-9c39-6f1f0b9b9f0e",
            1_795_000_000,
        );
        assert_eq!(CreatingMarker::parse(&m.to_value()), Some(m.clone()));
        for t in 1..20 {
            m = CreatingMarker::with_attempt(
                Some(m),
                "0b7c3a64-1b1e-4c39-9c39-6f1f0b9b9f0e",
                1_795_000_000 + t,
            )
            .with_key("AKIAABCDEFGHIJKLMNOP");
        }
        assert_eq!(m.times.len(), 5);
        assert_eq!(m.keys.len(), 3);
        assert_eq!(m.times.last(), Some(&1_795_000_019));
        assert!(m.to_value().len() <= 256, "{}", m.to_value().len());
        assert_eq!(CreatingMarker::parse(&m.to_value()), Some(m.clone()));
        // Another token starts afresh.
        let other = CreatingMarker::with_attempt(Some(m), "new", 500);
        assert_eq!((other.times, other.keys), (vec![500], vec![]));
    }

    #[test]
    fn marker_covers_only_its_token_keys_and_windows() {
        let m = CreatingMarker {
            token: "tok".into(),
            times: vec![100, 1000],
            keys: vec!["AKIAX".into()],
        };
        assert!(m.covers("tok", 100));
        assert!(m.covers("tok", 98), "clock skew");
        assert!(!m.covers("tok", 97));
        assert!(m.covers("tok", 115));
        assert!(!m.covers("tok", 116));
        assert!(m.covers("tok", 1010));
        assert!(!m.covers("other", 100));
        assert!(m.names("tok", "AKIAX"));
        assert!(!m.names("tok", "AKIAY"));
        assert!(!m.names("other", "AKIAX"));
        assert_eq!(CreatingMarker::parse("tok"), None);
        assert_eq!(CreatingMarker::parse("tok x"), None);
        assert_eq!(CreatingMarker::parse(""), None);
    }

    #[test]
    fn owner_tag_value_fits_a_tag() {
        let short = "arn:aws:secretsmanager:us-east-1:123456789012:secret:smtp-AbCdEf";
        assert_eq!(owner_tag_value(short), short);
        let long = format!(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}-AbCdEf",
            "n".repeat(300)
        );
        let v = owner_tag_value(&long);
        assert!(v.starts_with("sha256:") && v.len() <= 256, "{v}");
        assert_ne!(v, owner_tag_value(&format!("{long}x")));
    }
}
