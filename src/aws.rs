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

/// A staging label of a secret version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `AWSCURRENT`: the credentials applications use.
    Current,
    /// `AWSPENDING`: the rotation's new credentials.
    Pending,
    /// `AWSPREVIOUS`: the credentials before the last rotation.
    Previous,
}

impl Stage {
    /// The label as Secrets Manager writes it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "AWSCURRENT",
            Self::Pending => "AWSPENDING",
            Self::Previous => "AWSPREVIOUS",
        }
    }

    /// A word for messages ("the pending credentials").
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Pending => "pending",
            Self::Previous => "previous",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed CreateAccessKey.
#[derive(Debug)]
pub struct CreateKeyError {
    /// True when IAM may have made a key although the call failed (timeout, lost or 5xx
    /// response); false for a definite refusal (LimitExceeded, AccessDenied, NoSuchEntity…).
    pub ambiguous: bool,
    /// IAM refused for the two-keys-per-user limit.
    pub limit_exceeded: bool,
    /// The error.
    pub error: Error,
}

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
        let loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeouts)
            .http_client(https_client());
        Self::from_conf(&loader.load().await)
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

/// The HTTPS client every SDK configuration of the binary uses (the Lambda's and `doctor`'s,
/// so that both trust the same certificates): a [`LazyHttpsClient`].
pub(crate) fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_runtime_api::client::http::SharedHttpClient::new(LazyHttpsClient::default())
}

/// The SDK's HTTPS client: rustls on aws-lc, as the SDK's default, trusting the process's root
/// certificates ([`crate::roots`]: the system bundle read once, instead of the SDK's own loading
/// of the bundle *and* every file of the certificate directories beside it).
///
/// Built on the first request rather than at start-up: the SDK's client loads and parses its
/// trust store when the SDK client is made (most of the instructions before the first Runtime
/// API poll), and an invocation that makes no AWS call (a malformed event) never needs it.
/// Like boto3, which loads its CA bundle on its first connection, the first request of a
/// process pays for it, once. When no root certificate loads, the SDK's default (its own
/// loading of the system's store) is used.
#[derive(Debug, Default)]
struct LazyHttpsClient {
    inner: std::sync::OnceLock<aws_smithy_runtime_api::client::http::SharedHttpClient>,
}

impl LazyHttpsClient {
    fn inner(&self) -> &aws_smithy_runtime_api::client::http::SharedHttpClient {
        use aws_smithy_http_client::tls;
        self.inner.get_or_init(|| {
            let builder = aws_smithy_http_client::Builder::new().tls_provider(
                tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc),
            );
            let context = crate::roots::trusted_pem().and_then(|pem| {
                tls::TlsContext::builder()
                    .with_trust_store(tls::TrustStore::empty().with_pem_certificate(pem))
                    .build()
                    .map_err(|e| e.to_string())
            });
            match context {
                Ok(context) => builder.tls_context(context).build_https(),
                Err(why) => {
                    tracing::warn!("{why}; the AWS SDK loads the system's CA store itself");
                    builder.build_https()
                }
            }
        })
    }
}

impl aws_smithy_runtime_api::client::http::HttpClient for LazyHttpsClient {
    fn http_connector(
        &self,
        settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
        components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
    ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
        self.inner().http_connector(settings, components)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        // What the SDK's own client says (for the user agent), without building it.
        Some(
            aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata::new(
                "hyper",
                Some(std::borrow::Cow::Borrowed("1.x")),
            ),
        )
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
    pub fn version_with(&self, stage: Stage) -> Option<&str> {
        self.stages
            .iter()
            .find(|(_, s)| s.iter().any(|x| x == stage.as_str()))
            .map(|(v, _)| v.as_str())
    }

    /// Whether `version` holds `stage`.
    #[must_use]
    pub fn has_stage(&self, version: &str, stage: Stage) -> bool {
        self.stages
            .get(version)
            .is_some_and(|s| s.iter().any(|x| x == stage.as_str()))
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

/// GetAccessKeyLastUsed's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLookup {
    /// IAM describes the key.
    Found(KeyUsage),
    /// IAM answered NoSuchEntity.
    NoSuchKey,
    /// IAM answered AccessDenied (a role scoped to one user, as the template makes it, gets
    /// this for another user's key, and may for a key that no longer exists).
    Denied,
}

/// What GetAccessKeyLastUsed tells about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    /// The IAM user that owns the key.
    pub owner: Option<String>,
    /// Whether the key was ever used to sign a request.
    pub ever_used: bool,
    /// When IAM last saw it used (epoch seconds; IAM records about one use per 15 minutes).
    pub last_used: Option<i64>,
}

fn chain<E: std::error::Error>(e: &E) -> String {
    DisplayErrorContext(e).to_string()
}

/// Secrets Manager operations on one secret.
impl Clients {
    fn sm_err<E: std::error::Error>(op: &'static str, secret_id: &str, e: &E) -> Error {
        Error::SecretsManagerError {
            operation: op,
            secret_id: secret_id.to_owned(),
            detail: chain(e),
        }
    }

    /// DescribeSecret.
    ///
    /// # Errors
    /// [`Error::SecretNotFound`], or [`Error::SecretsManagerError`].
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

    /// The ARNs of every secret tagged `ses-smtp-rotator:managed=true` (ListSecrets with tag
    /// filters, all pages): what a shared deployment maintains.
    ///
    /// # Errors
    /// [`Error::SecretsManagerError`].
    pub async fn list_managed_secrets(&self) -> Result<Vec<String>, Error> {
        use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
        let filters = [
            Filter::builder()
                .key(FilterNameStringType::TagKey)
                .values("ses-smtp-rotator:managed")
                .build(),
            Filter::builder()
                .key(FilterNameStringType::TagValue)
                .values("true")
                .build(),
        ];
        let mut out = Vec::new();
        let mut pages = self
            .secrets
            .list_secrets()
            .set_filters(Some(filters.to_vec()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Self::sm_err("ListSecrets", "(managed secrets)", &e))?;
            for s in page.secret_list() {
                // The filters match a tag key and a tag value separately: check the pair.
                let managed = s.tags().iter().any(|t| {
                    t.key() == Some("ses-smtp-rotator:managed") && t.value() == Some("true")
                });
                if let (true, Some(arn)) = (managed, s.arn()) {
                    out.push(arn.to_owned());
                }
            }
        }
        Ok(out)
    }

    /// When a version of the secret was created (ListSecretVersionIds), epoch seconds.
    ///
    /// # Errors
    /// [`Error::SecretsManagerError`].
    pub async fn version_created(
        &self,
        secret_id: &str,
        version: &str,
    ) -> Result<Option<i64>, Error> {
        let mut pages = self
            .secrets
            .list_secret_version_ids()
            .secret_id(secret_id)
            .include_deprecated(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Self::sm_err("ListSecretVersionIds", secret_id, &e))?;
            if let Some(v) = page
                .versions()
                .iter()
                .find(|v| v.version_id() == Some(version))
            {
                return Ok(v.created_date().map(DateTime::secs));
            }
        }
        Ok(None)
    }

    /// GetSecretValue of a stage (and version). `Ok(None)` when that version has no value yet
    /// (Secrets Manager's empty AWSPENDING placeholder answers ResourceNotFound).
    ///
    /// # Errors
    /// [`Error::SecretsManagerError`] for anything but "no value".
    pub async fn get_value(
        &self,
        secret_id: &str,
        version_id: Option<&str>,
        stage: Stage,
    ) -> Result<Option<String>, Error> {
        let res = self
            .secrets
            .get_secret_value()
            .secret_id(secret_id)
            .set_version_id(version_id.map(str::to_owned))
            .version_stage(stage.as_str())
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

    /// PutSecretValue of the pending version for `token`. `Ok(false)` when the version
    /// already holds a different value (`ResourceExistsException`: another attempt stored its
    /// credentials first).
    ///
    /// # Errors
    /// [`Error::SecretsManagerError`].
    pub async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        rotation_token: Option<&str>,
        secret_string: String,
    ) -> Result<bool, Error> {
        let res = self
            .secrets
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(token)
            .secret_string(secret_string)
            .version_stages(Stage::Pending.as_str())
            .set_rotation_token(rotation_token.map(str::to_owned))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_exists_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(Self::sm_err("PutSecretValue", secret_id, &e)),
        }
    }

    /// Removes AWSPENDING from `token`'s version (a pending version that can never complete
    /// would otherwise block every later rotation).
    ///
    /// # Errors
    /// [`Error::SecretsManagerError`].
    pub async fn remove_pending(&self, secret_id: &str, token: &str) -> Result<(), Error> {
        self.secrets
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(Stage::Pending.as_str())
            .remove_from_version_id(token)
            .send()
            .await
            .map_err(|e| Self::sm_err("UpdateSecretVersionStage", secret_id, &e))?;
        Ok(())
    }

    /// Moves AWSCURRENT to `token`, removing it from `from` (Secrets Manager then labels
    /// `from` AWSPREVIOUS).
    ///
    /// # Errors
    /// [`Error::SecretsManagerError`].
    pub async fn move_current(
        &self,
        secret_id: &str,
        token: &str,
        from: Option<&str>,
    ) -> Result<(), Error> {
        self.secrets
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(Stage::Current.as_str())
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
        Error::IamError {
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
    /// [`Error::NoSuchUser`] or [`Error::IamError`].
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

    /// Who owns an access key and whether it was ever used (GetAccessKeyLastUsed).
    ///
    /// # Errors
    /// [`Error::IamError`] for failures other than "not found" / "access denied", which are
    /// answers here ([`KeyLookup`]).
    pub async fn key_usage(&self, key_id: &str, user: &str) -> Result<KeyLookup, Error> {
        match self
            .iam
            .get_access_key_last_used()
            .access_key_id(key_id)
            .send()
            .await
        {
            Ok(out) => Ok(KeyLookup::Found(KeyUsage {
                owner: out.user_name().map(str::to_owned),
                ever_used: out
                    .access_key_last_used()
                    .is_some_and(|u| u.last_used_date().is_some()),
                last_used: out
                    .access_key_last_used()
                    .and_then(|u| u.last_used_date())
                    .map(aws_smithy_types::DateTime::secs),
            })),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.meta().code() == Some("NoSuchEntity")) =>
            {
                Ok(KeyLookup::NoSuchKey)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.meta().code() == Some("AccessDenied")) =>
            {
                Ok(KeyLookup::Denied)
            }
            Err(e) => Err(Self::iam_err("GetAccessKeyLastUsed", user, &e)),
        }
    }

    /// The user's path (GetUser), e.g. `/ses-smtp/`. `allowed` (`IAM_USER_PATH`) only words
    /// the refusal when IAM denies the read.
    ///
    /// # Errors
    /// [`Error::NoSuchUser`], [`Error::UserNotPermitted`] (AccessDenied: the role's policy does
    /// not cover the user, or the user does not exist outside the granted ARNs) or
    /// [`Error::IamError`].
    pub async fn user_path(&self, user: &str, allowed: &str) -> Result<String, Error> {
        let out = self
            .iam
            .get_user()
            .user_name(user)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|s| s.code() == Some("AccessDenied"))
                {
                    Error::UserNotPermitted {
                        iam_user: user.to_owned(),
                        allowed: allowed.to_owned(),
                    }
                } else {
                    Self::user_err("GetUser", user, &e)
                }
            })?;
        Ok(out
            .user()
            .map_or_else(|| "/".to_owned(), |u| u.path().to_owned()))
    }

    /// The user's tags.
    ///
    /// # Errors
    /// [`Error::IamError`].
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
    /// [`Error::IamError`].
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

    /// Sets several tags on the user in one TagUser request (IAM applies it as a whole).
    ///
    /// # Errors
    /// [`Error::IamError`].
    pub async fn tag_user_all(&self, user: &str, tags: &[(String, String)]) -> Result<(), Error> {
        if tags.is_empty() {
            return Ok(());
        }
        let mut req = self.iam.tag_user().user_name(user);
        for (k, v) in tags {
            let tag = aws_sdk_iam::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| Self::iam_err("TagUser", user, &e))?;
            req = req.tags(tag);
        }
        req.send()
            .await
            .map_err(|e| Self::iam_err("TagUser", user, &e))?;
        Ok(())
    }

    /// Removes several tags from the user in one UntagUser request.
    ///
    /// # Errors
    /// [`Error::IamError`].
    pub async fn untag_user_all(&self, user: &str, keys: &[String]) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        self.iam
            .untag_user()
            .user_name(user)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map_err(|e| Self::iam_err("UntagUser", user, &e))?;
        Ok(())
    }

    /// Removes one tag from the user.
    ///
    /// # Errors
    /// [`Error::IamError`].
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
    /// [`CreateKeyError`]: the IAM error, and whether IAM may have made a key all the same.
    pub async fn create_key(
        &self,
        user: &str,
    ) -> Result<(String, SecretAccessKey), CreateKeyError> {
        let res = self
            .iam
            .create_access_key()
            .user_name(user)
            .customize()
            .config_override(
                aws_sdk_iam::config::Builder::default().retry_config(RetryConfig::disabled()),
            )
            .send()
            .await;
        let out = match res {
            Ok(out) => out,
            Err(e) => {
                // A modelled 4xx answer is definite: IAM refused and made nothing. A timeout, a
                // dispatch failure, a 5xx or an unreadable answer may hide a key IAM did make.
                let definite = e
                    .raw_response()
                    .is_some_and(|r| r.status().is_client_error());
                return Err(CreateKeyError {
                    ambiguous: !definite,
                    limit_exceeded: e
                        .as_service_error()
                        .is_some_and(|s| s.is_limit_exceeded_exception()),
                    error: Self::user_err("CreateAccessKey", user, &e),
                });
            }
        };
        let iam_answer = |detail: String| CreateKeyError {
            ambiguous: true,
            limit_exceeded: false,
            error: Error::IamError {
                operation: "CreateAccessKey",
                iam_user: user.to_owned(),
                detail,
            },
        };
        let key = out
            .access_key()
            .ok_or_else(|| iam_answer("the response has no access key".into()))?;
        let secret = SecretAccessKey::new(key.secret_access_key())
            .map_err(|e| iam_answer(format!("the new secret access key is unusable: {e}")))?;
        Ok((key.access_key_id().to_owned(), secret))
    }

    /// Marks a key Inactive. A key already gone is fine.
    ///
    /// # Errors
    /// [`Error::IamError`].
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
    /// [`Error::IamError`].
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
