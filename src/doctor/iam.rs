//! What AWS says: the secret document from Secrets Manager, and the `iam-key` and
//! `iam-permission` checks.
//!
//! The SDK configuration comes from the standard chain (environment, profile, SSO, IMDS…),
//! loaded once and only when needed. Without credentials, or without permission, the IAM checks
//! are `skip` with the reason, never an error of the run. Every call is bounded by the run's
//! [`Budget`]. (A module of its own rather than [`crate::aws`]: the rotation's client wraps
//! errors for the Lambda; here every outcome becomes a check.)

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_iam::config::ProvideCredentials;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::{PolicyEvaluationDecisionType, StatusType};
use aws_smithy_types::error::display::DisplayErrorContext;

use super::input::Facts;
use super::rotation::{LastUse, RotationFacts, Version};
use super::{Budget, Check, CheckId, Options};
use crate::record::{KeyState, Records};

/// The AWS side of one run: configuration loaded at most once.
pub(crate) struct Aws {
    budget: Budget,
    /// `SSL_CERT_FILE` must be usable before the SDK's HTTPS client loads it (it panics on a
    /// file without certificates).
    ca_file: Result<(), String>,
    conf: Option<Result<SdkConfig, String>>,
}

/// How to give the IAM checks what they need.
const IAM_HOW: &str = "run with AWS credentials (AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) allowed iam:ListAccessKeys, iam:GetAccessKeyLastUsed, iam:GetUser, iam:ListUserTags and iam:SimulatePrincipalPolicy (README, Troubleshooting 535, lists the policy)";

/// How to let the permission check run.
const PERMISSION_HOW: &str = "to see whether iam_user may send, run with credentials allowed iam:GetUser and iam:SimulatePrincipalPolicy; otherwise check that a policy of iam_user allows ses:SendRawEmail";

/// An SDK error in a few words: the service's code and message, or the HTTP status when the
/// answer had no error code, or the transport failure.
fn reason<E>(e: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match (e, e.code()) {
        (SdkError::ServiceError(_), Some(code)) => {
            format!("{code}: {}", e.message().unwrap_or("no message"))
        }
        (SdkError::ServiceError(_), None) => format!(
            "HTTP {} with no error code",
            e.raw_response().map_or(0, |r| r.status().as_u16())
        ),
        _ => DisplayErrorContext(e).to_string(),
    }
}

fn is_access_denied<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(
        e.code(),
        Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation")
    )
}

/// The region of a secret ARN (`arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME`).
fn arn_region(id: &str) -> Option<&str> {
    let mut parts = id.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("secretsmanager"), Some(r)) if !r.is_empty() => Some(r),
        _ => None,
    }
}

impl Aws {
    pub(crate) fn new(options: &Options, budget: Budget) -> Self {
        Self {
            budget,
            ca_file: options.ca_file.clone(),
            conf: None,
        }
    }

    /// The SDK configuration with credentials that resolve, or why there is none.
    async fn conf(&mut self) -> Result<SdkConfig, String> {
        if let Some(c) = &self.conf {
            return c.clone();
        }
        let loaded = self.load().await;
        self.conf = Some(loaded.clone());
        loaded
    }

    async fn load(&self) -> Result<SdkConfig, String> {
        self.ca_file.clone()?;
        let step = self.budget.next();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(step.min(Duration::from_secs(5)))
            .operation_attempt_timeout(step)
            .operation_timeout(step)
            .build();
        let loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(crate::aws::https_client())
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(2));
        let conf = self
            .budget
            .run(loader.load())
            .await
            .ok_or("loading the AWS configuration timed out")?;
        let provider = conf
            .credentials_provider()
            .ok_or("no AWS credentials provider is configured")?;
        match self.budget.run(provider.provide_credentials()).await {
            Some(Ok(_)) => Ok(conf),
            // The error's own words only: its Debug chain holds raw HTTP responses.
            Some(Err(e)) => Err(format!(
                "no AWS credentials found in the environment, profile, SSO, container or instance metadata ({})",
                e.to_string().chars().take(200).collect::<String>()
            )),
            None => Err("no AWS credentials found (looking for them timed out)".into()),
        }
    }

    fn iam(conf: &SdkConfig) -> aws_sdk_iam::Client {
        // IAM is global; without a configured region the SDK cannot pick its endpoint.
        let mut b = aws_sdk_iam::config::Builder::from(conf);
        if conf.region().is_none() {
            b = b.region(aws_sdk_iam::config::Region::new("us-east-1"));
        }
        aws_sdk_iam::Client::from_conf(b.build())
    }

    /// A Secrets Manager client for the secret `id` (its ARN's region, when it is an ARN).
    fn secrets_manager(conf: &SdkConfig, id: &str) -> aws_sdk_secretsmanager::Client {
        let mut b = aws_sdk_secretsmanager::config::Builder::from(conf);
        if let Some(r) = arn_region(id) {
            b = b.region(aws_sdk_secretsmanager::config::Region::new(r.to_owned()));
        }
        aws_sdk_secretsmanager::Client::from_conf(b.build())
    }

    /// Reads a version of the secret: its text and the secret's ARN. `Err((summary, fix))` for
    /// the `document` check.
    pub(crate) async fn secret_string(
        &mut self,
        id: &str,
        stage: &str,
    ) -> Result<(String, Option<String>), (String, String)> {
        let conf = self.conf().await.map_err(|e| {
            (
                format!("cannot read secret {id}: {e}"),
                "run with AWS credentials allowed secretsmanager:GetSecretValue on the secret, or pass the document with --document -".to_owned(),
            )
        })?;
        let sm = Self::secrets_manager(&conf, id);
        let call = sm
            .get_secret_value()
            .secret_id(id)
            .version_stage(stage)
            .send();
        let out = match self.budget.run(call).await {
            None => {
                return Err((
                    format!("reading secret {id} timed out"),
                    "check the network path to Secrets Manager (AWS_REGION, AWS_ENDPOINT_URL, proxies)".into(),
                ));
            }
            Some(Err(e)) => {
                let fix = if e
                    .as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception())
                {
                    format!(
                        "check the secret's name or ARN, its region (AWS_REGION), and that a version has the stage {stage}"
                    )
                } else if is_access_denied(&e) {
                    "grant secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its key), or pass the document with --document -".to_owned()
                } else {
                    "check AWS_REGION and the network path to Secrets Manager, or pass the document with --document -".to_owned()
                };
                return Err((
                    format!("cannot read secret {id} ({stage}): {}", reason(&e)),
                    fix,
                ));
            }
            Some(Ok(out)) => out,
        };
        let arn = out.arn().map(str::to_owned);
        out.secret_string()
            .map(|t| (t.to_owned(), arn))
            .ok_or_else(|| {
                (
                    format!("secret {id} ({stage}) has no SecretString (a binary secret)"),
                    "store the document as a JSON SecretString".to_owned(),
                )
            })
    }

    /// What `rotation-state` looks at: the secret's versions (ListSecretVersionIds), the
    /// user's tags (ListUserTags: the key record), and the last use (GetAccessKeyLastUsed) of
    /// each key recorded as previous. `Err` (a skip reason) only when AWS cannot be asked at
    /// all; a call that fails leaves its part `Err` with the reason.
    pub(crate) async fn rotation_facts(
        &mut self,
        secret_arn: &str,
        user: &str,
        doc_key: Option<&str>,
        stuck_after: Duration,
    ) -> Result<RotationFacts, String> {
        let conf = self
            .conf()
            .await
            .map_err(|e| format!("AWS not asked: {e}"))?;
        let sm = Self::secrets_manager(&conf, secret_arn);
        let listed = self
            .budget
            .run(
                sm.list_secret_version_ids()
                    .secret_id(secret_arn)
                    .into_paginator()
                    .send()
                    .try_collect(),
            )
            .await;
        let versions = match listed {
            None => Err("ListSecretVersionIds timed out".to_owned()),
            Some(Err(e)) if is_access_denied(&e) => Err(format!(
                "not allowed to list the secret's versions ({})",
                reason(&e)
            )),
            Some(Err(e)) => Err(format!("ListSecretVersionIds failed: {}", reason(&e))),
            Some(Ok(pages)) => Ok(pages
                .iter()
                .flat_map(|p| p.versions())
                .filter_map(|v| {
                    Some(Version {
                        id: v.version_id()?.to_owned(),
                        stages: v.version_stages().to_vec(),
                        created_ms: v.created_date().and_then(|d| d.to_millis().ok()),
                    })
                })
                .collect()),
        };
        let iam = Self::iam(&conf);
        let got = self
            .budget
            .run(
                iam.list_user_tags()
                    .user_name(user)
                    .into_paginator()
                    .items()
                    .send()
                    .try_collect(),
            )
            .await;
        let tags = match got {
            None => Err("ListUserTags timed out".to_owned()),
            Some(Err(e)) if is_access_denied(&e) => Err(format!(
                "not allowed to list {user}'s tags ({})",
                reason(&e)
            )),
            Some(Err(e)) => Err(format!("ListUserTags failed: {}", reason(&e))),
            Some(Ok(all)) => Ok(all
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect::<std::collections::HashMap<_, _>>()),
        };
        let mut last_used = std::collections::HashMap::new();
        let previous: Vec<String> = tags
            .as_ref()
            .ok()
            .and_then(|t| Records::from_tags(user, t).ok())
            .map(|r| {
                r.keys
                    .keys()
                    .filter(|k| r.state_of(k, secret_arn) == Some(KeyState::Previous))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for key in previous {
            let used = match self
                .budget
                .run(iam.get_access_key_last_used().access_key_id(&key).send())
                .await
            {
                None => LastUse::Unknown("GetAccessKeyLastUsed timed out".into()),
                Some(Err(e)) => LastUse::Unknown(reason(&e)),
                Some(Ok(out)) => match out.access_key_last_used() {
                    Some(u) => match u.last_used_date() {
                        Some(d) => LastUse::At {
                            secs: d.secs(),
                            service: u.service_name().to_owned(),
                            region: u.region().to_owned(),
                        },
                        None => LastUse::Never,
                    },
                    None => LastUse::Never,
                },
            };
            last_used.insert(key, used);
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Ok(RotationFacts {
            secret_arn: secret_arn.to_owned(),
            user: user.to_owned(),
            doc_key: doc_key.map(str::to_owned),
            versions,
            tags,
            last_used,
            now_ms,
            stuck_after_secs: stuck_after.as_secs_f64(),
        })
    }

    /// The `iam-key` and `iam-permission` checks.
    pub(crate) async fn iam_checks(&mut self, f: &Facts, key_id: Option<&str>) -> (Check, Check) {
        let Some(doc) = &f.doc else {
            return (
                Check::skip(CheckId::IamKey, "no usable iam_user (see document)"),
                Check::skip(CheckId::IamPermission, "no usable iam_user (see document)"),
            );
        };
        let user = doc.iam_user.as_str();
        let conf = match self.conf().await {
            Ok(c) => c,
            Err(e) => {
                let how = if self.ca_file.is_err() {
                    "point SSL_CERT_FILE at a PEM CA bundle, or unset it"
                } else {
                    IAM_HOW
                };
                return (
                    Check::skip_with(CheckId::IamKey, format!("IAM not asked: {e}"), how),
                    Check::skip_with(CheckId::IamPermission, format!("IAM not asked: {e}"), how),
                );
            }
        };
        let iam = Self::iam(&conf);
        let key = match key_id {
            None => Check::skip(
                CheckId::IamKey,
                "no long-term access key id to look up (see username)",
            ),
            Some(k) => match self.key_finding(&iam, user, k).await {
                Ok(finding) => key_check(&finding, user, k),
                Err(e) => Check::skip_with(CheckId::IamKey, e, IAM_HOW),
            },
        };
        let permission = match self.permission_finding(&iam, user).await {
            Ok(p) => permission_check(&p, user),
            Err(e) => Check::skip_with(CheckId::IamPermission, e, PERMISSION_HOW),
        };
        (key, permission)
    }

    async fn key_finding(
        &self,
        iam: &aws_sdk_iam::Client,
        user: &str,
        key_id: &str,
    ) -> Result<KeyFinding, String> {
        let listed = self
            .budget
            .run(iam.list_access_keys().user_name(user).send())
            .await
            .ok_or("ListAccessKeys timed out")?;
        match listed {
            Ok(out) => {
                if let Some(k) = out
                    .access_key_metadata()
                    .iter()
                    .find(|k| k.access_key_id() == Some(key_id))
                {
                    return Ok(KeyFinding::Listed {
                        active: k.status() == Some(&StatusType::Active),
                    });
                }
                Ok(match self.owner(iam, key_id).await {
                    Owner::User(u) if u == user => KeyFinding::OwnNotListed,
                    Owner::User(u) => KeyFinding::OtherUser(u),
                    Owner::NoSuchKey => KeyFinding::NotFound,
                    Owner::Unknown => KeyFinding::NotListed,
                })
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                let owner = match self.owner(iam, key_id).await {
                    Owner::User(u) => Some(u),
                    _ => None,
                };
                Ok(KeyFinding::UserMissing { owner })
            }
            Err(e) if is_access_denied(&e) => Err(format!(
                "not allowed to list {user}'s access keys ({})",
                reason(&e)
            )),
            Err(e) => Err(format!("ListAccessKeys failed: {}", reason(&e))),
        }
    }

    /// Whose key `key_id` is, by GetAccessKeyLastUsed.
    async fn owner(&self, iam: &aws_sdk_iam::Client, key_id: &str) -> Owner {
        match self
            .budget
            .run(iam.get_access_key_last_used().access_key_id(key_id).send())
            .await
        {
            Some(Ok(out)) => out
                .user_name()
                .map_or(Owner::NoSuchKey, |u| Owner::User(u.to_owned())),
            Some(Err(e)) if e.code() == Some("NoSuchEntity") => Owner::NoSuchKey,
            _ => Owner::Unknown,
        }
    }

    async fn permission_finding(
        &self,
        iam: &aws_sdk_iam::Client,
        user: &str,
    ) -> Result<Permission, String> {
        let got = self
            .budget
            .run(iam.get_user().user_name(user).send())
            .await
            .ok_or("GetUser timed out")?;
        let arn = match got {
            Ok(out) => out.user().map(|u| u.arn().to_owned()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                return Err(format!("IAM user {user} does not exist (see iam-key)"));
            }
            Err(e) => return Err(format!("GetUser failed: {}", reason(&e))),
        }
        .ok_or("GetUser returned no user")?;
        let simulated = self
            .budget
            .run(
                iam.simulate_principal_policy()
                    .policy_source_arn(arn)
                    .action_names("ses:SendRawEmail")
                    .send(),
            )
            .await
            .ok_or("SimulatePrincipalPolicy timed out")?;
        match simulated {
            Ok(out) => {
                let decisions: Vec<PolicyEvaluationDecisionType> = out
                    .evaluation_results()
                    .iter()
                    .map(|r| r.eval_decision().clone())
                    .collect();
                Ok(permission_from(&decisions))
            }
            Err(e) if is_access_denied(&e) => Err(format!(
                "not allowed to simulate {user}'s policies ({})",
                reason(&e)
            )),
            Err(e) => Err(format!(
                "IAM policy simulation is not available here ({})",
                reason(&e)
            )),
        }
    }
}

enum Owner {
    User(String),
    NoSuchKey,
    Unknown,
}

/// What IAM says about the document's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyFinding {
    /// Among `iam_user`'s keys.
    Listed {
        /// Status Active (else Inactive).
        active: bool,
    },
    /// IAM says the key is `iam_user`'s, but ListAccessKeys does not list it (yet).
    OwnNotListed,
    /// The key belongs to another user.
    OtherUser(String),
    /// IAM knows no such key: deleted (or never existed).
    NotFound,
    /// Not among `iam_user`'s keys; IAM would not say whose.
    NotListed,
    /// `iam_user` does not exist; the key's owner when IAM said.
    UserMissing {
        /// The key's owner.
        owner: Option<String>,
    },
}

/// `iam-key` from what IAM said.
pub(crate) fn key_check(f: &KeyFinding, user: &str, key_id: &str) -> Check {
    let id = CheckId::IamKey;
    let rotate = "rotate the secret (aws secretsmanager rotate-secret --secret-id ...): it creates a new key for iam_user and writes both fields";
    match f {
        KeyFinding::Listed { active: true } => {
            Check::pass(id, format!("{key_id} is an Active key of IAM user {user}"))
        }
        KeyFinding::Listed { active: false } => Check::fail(
            id,
            format!("{key_id} is Inactive: SES answers 535 for an inactive key"),
            format!(
                "aws iam update-access-key --user-name {user} --access-key-id {key_id} --status Active (if it was deactivated by mistake), or {rotate}"
            ),
        ),
        KeyFinding::OwnNotListed => Check::warn(
            id,
            format!(
                "IAM says {key_id} belongs to {user}, but does not list it among {user}'s keys yet (just created?)"
            ),
            "wait a minute and run again",
        ),
        KeyFinding::OtherUser(other) => Check::fail(
            id,
            format!(
                "{key_id} belongs to IAM user {other}, not to {user} (the document's iam_user)"
            ),
            format!("set \"iam_user\" to {other} if that user is meant, or {rotate}"),
        ),
        KeyFinding::NotFound => Check::fail(
            id,
            format!("IAM has no access key {key_id}: it was deleted"),
            rotate.to_owned(),
        ),
        KeyFinding::NotListed => Check::fail(
            id,
            format!("{key_id} is not one of {user}'s keys (deleted, or another account's)"),
            rotate.to_owned(),
        ),
        KeyFinding::UserMissing { owner } => Check::fail(
            id,
            format!(
                "IAM user {user} does not exist{}",
                owner
                    .as_ref()
                    .map(|o| format!("; {key_id} belongs to {o}"))
                    .unwrap_or_default()
            ),
            "set \"iam_user\" to the user that owns the key, or create the user and rotate the secret",
        ),
    }
}

/// What policy simulation says about `ses:SendRawEmail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Permission {
    /// Allowed.
    Allowed,
    /// No policy allows it.
    ImplicitDeny,
    /// A policy denies it.
    ExplicitDeny,
    /// No usable answer.
    Unknown,
}

pub(crate) fn permission_from(decisions: &[PolicyEvaluationDecisionType]) -> Permission {
    if decisions.contains(&PolicyEvaluationDecisionType::ExplicitDeny) {
        Permission::ExplicitDeny
    } else if decisions.is_empty() {
        Permission::Unknown
    } else if decisions
        .iter()
        .all(|d| *d == PolicyEvaluationDecisionType::Allowed)
    {
        Permission::Allowed
    } else if decisions.contains(&PolicyEvaluationDecisionType::ImplicitDeny) {
        Permission::ImplicitDeny
    } else {
        Permission::Unknown
    }
}

/// `iam-permission` from the simulation.
pub(crate) fn permission_check(p: &Permission, user: &str) -> Check {
    let id = CheckId::IamPermission;
    let note = "this does not cause 535 (SES accepts the login and refuses the message with 554), but no mail goes out";
    match p {
        Permission::Allowed => Check::pass(
            id,
            format!("IAM policy simulation: {user} may ses:SendRawEmail"),
        ),
        Permission::ImplicitDeny => Check::fail(
            id,
            format!("IAM policy simulation: no policy of {user} allows ses:SendRawEmail; {note}"),
            format!(
                "attach a policy allowing ses:SendRawEmail (on the sending identities) to {user}"
            ),
        ),
        Permission::ExplicitDeny => Check::fail(
            id,
            format!(
                "IAM policy simulation: a policy explicitly denies ses:SendRawEmail to {user}; {note}"
            ),
            "find the Deny statement (user, group, permissions boundary or SCP) and narrow it",
        ),
        Permission::Unknown => Check::skip(
            id,
            "IAM policy simulation gave no decision for ses:SendRawEmail",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    #[test]
    fn key_findings_map_to_checks() {
        let k = "AKIAIOSFODNN7EXAMPLE";
        for (f, status, needle) in [
            (KeyFinding::Listed { active: true }, Status::Pass, "Active"),
            (
                KeyFinding::Listed { active: false },
                Status::Fail,
                "Inactive",
            ),
            (KeyFinding::OwnNotListed, Status::Warn, "yet"),
            (
                KeyFinding::OtherUser("bob".into()),
                Status::Fail,
                "belongs to IAM user bob",
            ),
            (KeyFinding::NotFound, Status::Fail, "deleted"),
            (
                KeyFinding::NotListed,
                Status::Fail,
                "not one of alice's keys",
            ),
            (
                KeyFinding::UserMissing {
                    owner: Some("bob".into()),
                },
                Status::Fail,
                "does not exist; AKIAIOSFODNN7EXAMPLE belongs to bob",
            ),
        ] {
            let c = key_check(&f, "alice", k);
            assert_eq!(c.status, status, "{f:?}");
            assert!(c.summary.contains(needle), "{f:?}: {}", c.summary);
            assert_eq!(c.fix.is_some(), status != Status::Pass, "{f:?}");
        }
    }

    #[test]
    fn simulation_decisions_map_to_checks() {
        use PolicyEvaluationDecisionType as D;
        for (d, p, status) in [
            (vec![D::Allowed], Permission::Allowed, Status::Pass),
            (
                vec![D::ImplicitDeny],
                Permission::ImplicitDeny,
                Status::Fail,
            ),
            (
                vec![D::Allowed, D::ExplicitDeny],
                Permission::ExplicitDeny,
                Status::Fail,
            ),
            (vec![], Permission::Unknown, Status::Skip),
        ] {
            assert_eq!(permission_from(&d), p, "{d:?}");
            assert_eq!(permission_check(&p, "alice").status, status, "{d:?}");
        }
    }

    #[test]
    fn arn_region_reads_secret_arns_only() {
        assert_eq!(
            arn_region("arn:aws:secretsmanager:eu-west-1:123456789012:secret:x-AbCdEf"),
            Some("eu-west-1")
        );
        assert_eq!(arn_region("my-secret"), None);
        assert_eq!(arn_region("arn:aws:iam::123456789012:user/x"), None);
    }
}
