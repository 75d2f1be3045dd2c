//! The one error type of the rotation. Each variant is a stable `errorType` for the Lambda
//! runtime (and so for Secrets Manager's rotation failure message and CloudWatch), and each
//! message says what is wrong and what to do. No message ever contains a secret value: the
//! variants carry field names, key ids, ARNs and version ids only.

use lambda_runtime::Diagnostic;

use crate::aws::Stage;
use crate::secret::SecretError;

/// Everything that can stop a rotation step.
// Variants are named as their stable error types (`SecretsManagerError`, `IamError`), so that
// a search for the type in the logs lands on the code.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The invocation payload is neither a rotation event nor a maintenance event.
    #[error(
        "malformed event: {0}. Expected a rotation event {{\"Step\", \"SecretId\", \"ClientRequestToken\"}} as sent by Secrets Manager, or the scheduled maintenance event {{\"Action\": \"maintenance\", \"SecretIds\"?: [...]}}"
    )]
    InvalidEvent(String),
    /// The event names a step this function does not know.
    #[error(
        "unknown rotation step {0:?}: expected createSecret, setSecret, testSecret or finishSecret"
    )]
    UnknownStep(String),
    /// Invalid configuration in the function's environment.
    #[error("invalid configuration: {0}")]
    InvalidConfiguration(String),
    /// The secret does not exist (or this function may not see it).
    #[error("secret {secret_id} not found; check the SecretId and the function's permissions")]
    SecretNotFound {
        /// The secret.
        secret_id: String,
    },
    /// Rotation is not enabled on the secret.
    #[error(
        "rotation is not enabled on secret {secret_id}; enable it (RotateSecret / a RotationSchedule) before invoking this function"
    )]
    RotationNotEnabled {
        /// The secret.
        secret_id: String,
    },
    /// The token is not a version of the secret.
    #[error(
        "version {token} is not a version of secret {secret_id}; a rotation token must come from RotateSecret"
    )]
    VersionNotFound {
        /// The secret.
        secret_id: String,
        /// The ClientRequestToken.
        token: String,
    },
    /// The token version is not staged AWSPENDING.
    #[error(
        "version {token} of secret {secret_id} is not staged AWSPENDING (and not AWSCURRENT); another rotation may have replaced it: start a new rotation"
    )]
    VersionNotPending {
        /// The secret.
        secret_id: String,
        /// The ClientRequestToken.
        token: String,
    },
    /// The secret document is malformed.
    #[error("secret {secret_id} ({stage}): {source}")]
    MalformedSecret {
        /// The secret.
        secret_id: String,
        /// Which version.
        stage: Stage,
        /// What is wrong.
        #[source]
        source: SecretError,
    },
    /// The pending version holds a document for a different user/endpoint than the current
    /// (or no credentials): it can never be promoted, so AWSPENDING was removed from it.
    #[error(
        "the AWSPENDING value of secret {secret_id} (version {token}) has no credentials, or differs from AWSCURRENT in {fields}; its credentials are never tested or promoted (AWSCURRENT was edited during the rotation, or the version was written behind its back). AWSPENDING was removed from that version{cleanup}, so the next rotation starts fresh: rotate again (aws secretsmanager rotate-secret --secret-id {secret_id}). AWSCURRENT was not changed"
    )]
    PendingMismatch {
        /// The secret.
        secret_id: String,
        /// The ClientRequestToken.
        token: String,
        /// The fields that differ (or `credentials`).
        fields: String,
        /// What else was cleaned up (the pending key this rotation minted, deleted), or empty.
        cleanup: String,
    },
    /// The current key belongs to another IAM user than `iam_user`.
    #[error(
        "the current username {key_id} is an access key of IAM user {owner}, not of {iam_user} named in the secret; fix \"iam_user\" or put a key of {iam_user} in the secret. Nothing was changed"
    )]
    KeyBelongsToOtherUser {
        /// The current key id.
        key_id: String,
        /// The user that owns it.
        owner: String,
        /// The user the secret names.
        iam_user: String,
    },
    /// The current key is not among the user's keys at all.
    #[error(
        "the current username {key_id} is not an access key of IAM user {iam_user} (it was deleted, or belongs to a user this function may not inspect); fix \"iam_user\" or put a working key of {iam_user} in the secret, or remove username/password to bootstrap. Nothing was changed"
    )]
    CurrentKeyMissing {
        /// The current key id.
        key_id: String,
        /// The user the secret names.
        iam_user: String,
    },
    /// A key of the user that the key record does not prove this function made for the secret.
    #[error(
        "IAM user {iam_user} has access key {key_id}{named}, which this function has no record of making for secret {secret_id}; it never deletes or deactivates such a key, and the user can hold only two. If the key is this secret's to rotate, adopt it: aws iam tag-user --user-name {iam_user} --tags Key=ses-smtp-rotator:key:{key_id},Value=adopt (a key the secret does not name is then retired by the next rotation); otherwise delete it: aws iam delete-access-key --user-name {iam_user} --access-key-id {key_id}. Then rotate again. Nothing was changed"
    )]
    UnadoptedAccessKey {
        /// The user.
        iam_user: String,
        /// The key.
        key_id: String,
        /// The secret.
        secret_id: String,
        /// Which version names it (" (named by AWSCURRENT)"), or empty.
        named: &'static str,
    },
    /// A key record tag on the user cannot be read.
    #[error(
        "IAM user {iam_user} has a tag {tag} that is not a key record this function wrote (\"<secret>:<token>:<m|c|p|r>:<epoch>\" or \"adopt\"); the record proves which keys the function may retire, so it is never reset silently. Restore the value, set it to adopt to hand the key over, or remove the tag if the key no longer exists (aws iam untag-user --user-name {iam_user} --tag-keys {tag}). Nothing was changed"
    )]
    KeyRecordUnreadable {
        /// The user.
        iam_user: String,
        /// The tag key.
        tag: String,
    },
    /// Shared scope: the user carries no owner tag naming the secret.
    #[error(
        "IAM user {iam_user} is not assigned to secret {secret_id}: in shared scope the function serves a user only when its tag ses-smtp-rotator:secret names the secret, set by whoever creates both (deploy/app-stack.yaml does); the function never claims a user there. Tag it: aws iam tag-user --user-name {iam_user} --tags Key=ses-smtp-rotator:secret,Value={secret_id}. Nothing was changed"
    )]
    UserNotAssigned {
        /// The user.
        iam_user: String,
        /// The secret.
        secret_id: String,
    },
    /// The pending version names a key the record does not show this rotation minted.
    #[error(
        "the AWSPENDING version {token} of secret {secret_id} names access key {key_id} of IAM user {iam_user}, which this rotation did not make (no key record ses-smtp-rotator:key:{key_id} for this token); it is never promoted. AWSPENDING was removed from that version (the key was left alone), so the next rotation starts fresh: rotate again (aws secretsmanager rotate-secret --secret-id {secret_id}). AWSCURRENT was not changed"
    )]
    PendingKeyNotRecorded {
        /// The secret.
        secret_id: String,
        /// The ClientRequestToken.
        token: String,
        /// The key the pending version names.
        key_id: String,
        /// The user.
        iam_user: String,
    },
    /// The IAM user's keys are already rotated by another secret.
    #[error(
        "IAM user {iam_user} is tagged as rotated by another secret ({owner}); a user must be dedicated to one secret, or the rotations delete each other's keys. Use a separate IAM user for {secret_id}; if the other secret no longer exists, remove the tag: aws iam untag-user --user-name {iam_user} --tag-keys ses-smtp-rotator:secret. Nothing was changed"
    )]
    UserNotDedicated {
        /// The user.
        iam_user: String,
        /// This secret.
        secret_id: String,
        /// The tag's value (the other secret's ARN or its digest).
        owner: String,
    },
    /// The IAM user does not exist.
    #[error(
        "IAM user {iam_user} does not exist; create it (with a policy allowing ses:SendRawEmail) or fix \"iam_user\" in the secret"
    )]
    NoSuchUser {
        /// The user.
        iam_user: String,
    },
    /// IAM denied the function's role reading the user (GetUser AccessDenied): the user is not
    /// one this deployment's role policy covers, or it does not exist (IAM authorizes before it
    /// looks the user up, so a missing user outside the granted ARNs is denied, not absent).
    #[error(
        "IAM denied this function reading IAM user {iam_user} (AccessDenied on iam:GetUser): its role may manage only the users its stack grants (Scope=single: SmtpIamUserName under SmtpIamUserPath; Scope=shared: users under {allowed}), and a user that does not exist is denied the same way (a role without iam:GetUser, deployed from a template before it granted it, is denied for every user: update the stack). Fix \"iam_user\" in the secret, create the user under {allowed}, or deploy the function for this user. Nothing was changed"
    )]
    UserNotPermitted {
        /// The user.
        iam_user: String,
        /// The configured path (`IAM_USER_PATH`).
        allowed: String,
    },
    /// The pending key is missing or inactive in IAM (setSecret).
    #[error(
        "the pending access key {key_id} is {state} for IAM user {iam_user} (deactivated outside the rotation), so it can never be proven or promoted. AWSPENDING was removed from that version (version {token} of secret {secret_id}), so the next rotation starts fresh and deletes that key: rotate again (aws secretsmanager rotate-secret --secret-id {secret_id}). AWSCURRENT was not changed"
    )]
    PendingKeyNotActive {
        /// The secret.
        secret_id: String,
        /// The ClientRequestToken.
        token: String,
        /// The key.
        key_id: String,
        /// The user.
        iam_user: String,
        /// "missing" or "inactive".
        state: &'static str,
    },
    /// SES kept answering 535 (or 454) to the pending credentials.
    #[error(
        "SES at {endpoint} rejected the {} credentials for {key_id} (last reply: {last}) after {attempts} attempts over {waited_secs}s. Likely causes: the new key has not propagated yet (raise SMTP_TEST_TIMEOUT_SECONDS), the password was derived for another region than the endpoint's ({region}), the account or region is not enabled for SES, or the key is inactive. A missing ses:SendRawEmail permission is NOT a cause of 535. AWSCURRENT was not changed", .which.label()
    )]
    SmtpAuthRejected {
        /// host:port.
        endpoint: String,
        /// Which version's credentials were tested.
        which: Stage,
        /// The key id tried.
        key_id: String,
        /// The region the password is for.
        region: String,
        /// The last SMTP reply code and text, without credentials.
        last: String,
        /// How many AUTH attempts were made.
        attempts: u32,
        /// How long it kept trying.
        waited_secs: u64,
    },
    /// SES refused AUTH with something other than 535 (retrying would not help).
    #[error(
        "SES at {endpoint} refused AUTH for {key_id}: {reply}. This is not a credentials rejection (535): check that the endpoint is an SES SMTP endpoint, and the account's SES status in that region (sending paused?). AWSCURRENT was not changed"
    )]
    SmtpAuthRefused {
        /// host:port.
        endpoint: String,
        /// The key id.
        key_id: String,
        /// The SMTP reply.
        reply: String,
    },
    /// The SMTP endpoint could not be reached or TLS failed.
    #[error(
        "cannot reach SES SMTP at {endpoint}: {detail}. Check: a Lambda in a VPC needs a NAT gateway or an SES SMTP interface endpoint (com.amazonaws.REGION.email-smtp); security group egress must allow the port; port 25 is throttled on AWS, use 587 (STARTTLS) or 465 (TLS); the host name and \"tls\" mode must match the port. AWSCURRENT was not changed"
    )]
    SmtpUnreachable {
        /// host:port.
        endpoint: String,
        /// What failed (refused, DNS, timeout, TLS), without credentials.
        detail: String,
    },
    /// The SMTP server's certificate is not trusted (unknown CA, name mismatch, expired).
    #[error(
        "the SMTP server at {endpoint} presented a certificate this function does not trust: {detail}. No credentials were sent. For an SES endpoint this means something between the function and SES intercepts TLS; for an own relay, give the function its CA (SMTP_CA_FILE; SSL_CERT_FILE would replace the roots for AWS calls too) and make sure the certificate names the host in \"host\". AWSCURRENT was not changed"
    )]
    SmtpCertificateUntrusted {
        /// host:port.
        endpoint: String,
        /// What rustls said, with the certificate's problem.
        detail: String,
    },
    /// The test send was refused for lack of permission (554).
    #[error(
        "SES accepted the login for {key_id} but refused the test message from {from}: {reply}. IAM user {iam_user} needs ses:SendRawEmail on the sending identity (and any ses:FromAddress condition must allow {from}). AWSCURRENT was not changed"
    )]
    SmtpSendNotAuthorized {
        /// The key id.
        key_id: String,
        /// The user.
        iam_user: String,
        /// The sender.
        from: String,
        /// The SMTP reply.
        reply: String,
    },
    /// The test send failed for another reason.
    #[error(
        "SES accepted the login for {key_id} but the test message failed: {reply}. AWSCURRENT was not changed"
    )]
    SmtpSendFailed {
        /// The key id.
        key_id: String,
        /// The SMTP reply or failure.
        reply: String,
    },
    /// The token's pending version names a key that is confirmed gone; AWSPENDING was removed.
    #[error(
        "the AWSPENDING version {token} of secret {secret_id} names access key {key_id}, which no longer exists for IAM user {iam_user} (deleted outside the rotation). AWSPENDING was removed from that version, so the next rotation starts fresh: rotate again (aws secretsmanager rotate-secret --secret-id {secret_id}). AWSCURRENT was not changed"
    )]
    PendingKeyGone {
        /// The secret.
        secret_id: String,
        /// The ClientRequestToken.
        token: String,
        /// The missing key.
        key_id: String,
        /// The user.
        iam_user: String,
    },
    /// The document's SMTP host is not an SES endpoint and not allowed by the operator.
    #[error(
        "secret {secret_id} ({stage}): {field} names host {host}, which is not an SES SMTP endpoint (email-smtp[-fips].REGION.amazonaws.com[.cn], email-smtp[-fips].REGION.api.aws, a VPC endpoint name) and not in SMTP_ALLOWED_HOSTS; fresh credentials are sent only to SES. If this host is your own relay, add it to the function's SMTP_ALLOWED_HOSTS (exact name or *.suffix). Nothing was changed and nothing was sent"
    )]
    HostNotAllowed {
        /// The secret.
        secret_id: String,
        /// Which version.
        stage: Stage,
        /// The field naming the host (`host` or `regions`).
        field: &'static str,
        /// The host (a host name is not secret).
        host: String,
    },
    /// The IAM user is outside `IAM_USER_PATH`.
    #[error(
        "IAM user {iam_user} has path {path}, which is not under {allowed} (IAM_USER_PATH); this function rotates only users under that path. Move the secret to a user under {allowed}, or change the function's SmtpIamUserPath. Nothing was changed"
    )]
    UserOutsidePath {
        /// The user.
        iam_user: String,
        /// The user's path.
        path: String,
        /// The configured path.
        allowed: String,
    },
    /// The pending value could not be read although an attempt made a key for the token.
    #[error(
        "the AWSPENDING version {token} of secret {secret_id} has no readable value although this rotation created key {key_id} for it (a read lag); retry the step (Secrets Manager retries the rotation)"
    )]
    PendingNotReadable {
        /// The secret.
        secret_id: String,
        /// The ClientRequestToken.
        token: String,
        /// The key the marker names.
        key_id: String,
    },
    /// Another invocation of this rotation is running and may still be storing a key.
    #[error(
        "another invocation of the rotation of secret {secret_id} is still running (started {started_secs_ago}s ago, its deadline in {deadline_in_secs}s) and may still be storing access key {key}; nothing was changed. Retry after it ends (Secrets Manager retries the rotation)"
    )]
    AttemptInProgress {
        /// The secret.
        secret_id: String,
        /// The key that may still be stored, or "a key not yet listed".
        key: String,
        /// How long ago the other attempt began.
        started_secs_ago: i64,
        /// When the other attempt's lease ends.
        deadline_in_secs: i64,
    },
    /// IAM cannot yet describe a key that decides what the step may do (eventual consistency).
    #[error(
        "IAM cannot describe access key {key_id} of user {iam_user} yet (eventual consistency); nothing was changed. Retry in a few seconds (Secrets Manager retries the rotation)"
    )]
    KeyNotYetVisible {
        /// The key.
        key_id: String,
        /// The user.
        iam_user: String,
    },
    /// The TLS set-up for the SMTP endpoint failed before any connection (configuration).
    #[error(
        "cannot set up TLS for {endpoint}: {detail}; check the secret's \"host\", SMTP_CA_FILE and SSL_CERT_FILE. AWSCURRENT was not changed"
    )]
    TlsSetup {
        /// host:port.
        endpoint: String,
        /// What failed.
        detail: String,
    },
    /// A document with `regions`: SES did not accept the credentials at every region's
    /// endpoint. Each failed region is named with its own error type and message.
    #[error(
        "SES did not accept the {} credentials for {key_id} in every region ({} of {total} failed): {}.{} AWSCURRENT was not changed", .which.label(), .failures.len(), list_failures(.failures), list_passed(.passed)
    )]
    SmtpRegionsFailed {
        /// Which version's credentials were tested.
        which: Stage,
        /// The key id tried.
        key_id: String,
        /// How many regions were tested.
        total: usize,
        /// Each region that failed, in the document's order.
        failures: Vec<RegionFailure>,
        /// The regions whose endpoint accepted the credentials.
        passed: Vec<String>,
    },
    /// A Secrets Manager call failed.
    #[error("Secrets Manager {operation} failed for {secret_id}: {detail}")]
    SecretsManagerError {
        /// The API operation.
        operation: &'static str,
        /// The secret.
        secret_id: String,
        /// The SDK's error chain (service messages; never a secret value).
        detail: String,
    },
    /// An IAM call failed.
    #[error("IAM {operation} failed for user {iam_user}: {detail}")]
    IamError {
        /// The API operation.
        operation: &'static str,
        /// The user.
        iam_user: String,
        /// The SDK's error chain.
        detail: String,
    },
}

impl Error {
    /// The stable `errorType` reported to the Lambda runtime.
    #[must_use]
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidEvent(_) => "InvalidEvent",
            Self::UnknownStep(_) => "UnknownStep",
            Self::InvalidConfiguration(_) => "InvalidConfiguration",
            Self::SecretNotFound { .. } => "SecretNotFound",
            Self::RotationNotEnabled { .. } => "RotationNotEnabled",
            Self::VersionNotFound { .. } => "VersionNotFound",
            Self::VersionNotPending { .. } => "VersionNotPending",
            Self::MalformedSecret { .. } => "MalformedSecret",
            Self::PendingMismatch { .. } => "PendingMismatch",
            Self::KeyBelongsToOtherUser { .. } => "KeyBelongsToOtherUser",
            Self::CurrentKeyMissing { .. } => "CurrentKeyMissing",
            Self::UnadoptedAccessKey { .. } => "UnadoptedAccessKey",
            Self::UserNotDedicated { .. } => "UserNotDedicated",
            Self::KeyRecordUnreadable { .. } => "KeyRecordUnreadable",
            Self::UserNotAssigned { .. } => "UserNotAssigned",
            Self::PendingKeyNotRecorded { .. } => "PendingKeyNotRecorded",
            Self::NoSuchUser { .. } => "NoSuchUser",
            Self::UserNotPermitted { .. } => "UserNotPermitted",
            Self::PendingKeyNotActive { .. } => "PendingKeyNotActive",
            Self::SmtpAuthRejected { .. } => "SmtpAuthRejected",
            Self::SmtpAuthRefused { .. } => "SmtpAuthRefused",
            Self::SmtpUnreachable { .. } => "SmtpUnreachable",
            Self::SmtpCertificateUntrusted { .. } => "SmtpCertificateUntrusted",
            Self::SmtpSendNotAuthorized { .. } => "SmtpSendNotAuthorized",
            Self::SmtpSendFailed { .. } => "SmtpSendFailed",
            Self::PendingKeyGone { .. } => "PendingKeyGone",
            Self::HostNotAllowed { .. } => "HostNotAllowed",
            Self::UserOutsidePath { .. } => "UserOutsidePath",
            Self::PendingNotReadable { .. } => "PendingNotReadable",
            Self::AttemptInProgress { .. } => "AttemptInProgress",
            Self::KeyNotYetVisible { .. } => "KeyNotYetVisible",
            Self::TlsSetup { .. } => "TlsSetupFailed",
            Self::SecretsManagerError { .. } => "SecretsManagerError",
            Self::IamError { .. } => "IamError",
            Self::SmtpRegionsFailed { .. } => "SmtpRegionsFailed",
        }
    }
}

/// One region's failure in [`Error::SmtpRegionsFailed`].
#[derive(Debug)]
pub struct RegionFailure {
    /// The SES region.
    pub region: String,
    /// Why it failed (its own error: [`Error::SmtpAuthRejected`], [`Error::SmtpUnreachable`], ...).
    pub error: Box<Error>,
}

fn list_failures(failures: &[RegionFailure]) -> String {
    failures
        .iter()
        .map(|f| {
            let message = f.error.to_string();
            let message = message
                .strip_suffix(". AWSCURRENT was not changed")
                .unwrap_or(&message);
            format!("[{}] {}: {message}", f.region, f.error.error_type())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn list_passed(passed: &[String]) -> String {
    if passed.is_empty() {
        String::new()
    } else {
        format!(" Accepted in: {}.", passed.join(", "))
    }
}

impl From<Error> for Diagnostic {
    fn from(e: Error) -> Self {
        Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}
