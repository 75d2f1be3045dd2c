"""SES SMTP credential rotation for AWS Secrets Manager, in Python: the bench's rival.

The same contract as ses-smtp-rotator (see /DESIGN.md in the shared notes), written the way
AWS's published Python rotation functions are (aws-samples/aws-secrets-manager-rotation-lambdas,
SecretsManagerRotationTemplate): one function per step, boto3 clients made once at init,
log lines that name the step, the secret and the version but never a value.

It exists only so that `make bench` can compare a Rust and a Python rotator doing the same
work against the same stand-ins. It is small on purpose: it has the preamble's checks, the
idempotent createSecret, the 2-key limit, CreateAccessKey without retries, the SigV4 SMTP
password, the SMTP login with a propagation retry and the old key's deactivation, but not the
Rust rotator's marker tags, owner tags, host allow-list, PendingMismatch or RotateImmediately
fallbacks beyond the basic one.

Environment: the Lambda's (AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, credentials), plus
SMTP_TEST_TIMEOUT_SECONDS (default 60) and SMTP_CONNECT_TIMEOUT_SECONDS (default 10).
TLS trusts the system roots; SSL_CERT_FILE points OpenSSL at a test CA.
"""

import base64
import hashlib
import hmac
import json
import logging
import os
import random
import smtplib
import ssl
import time

import boto3
from botocore.config import Config

logger = logging.getLogger()
logger.setLevel(logging.INFO)

# Made once per container (Lambda init), reused by every invocation.
secretsmanager = boto3.client("secretsmanager")
iam = boto3.client("iam")
# CreateAccessKey must not be retried by the SDK: a lost response would mint a second key.
iam_no_retry = boto3.client("iam", config=Config(retries={"total_max_attempts": 1}))

SMTP_TEST_TIMEOUT = float(os.environ.get("SMTP_TEST_TIMEOUT_SECONDS", "60"))
SMTP_CONNECT_TIMEOUT = float(os.environ.get("SMTP_CONNECT_TIMEOUT_SECONDS", "10"))
# The classic capped doubling backoff, as most published rotators retry: 0.5 s doubling to 8 s,
# jitter ±25 % (the Rust rotator's policy until it moved to one attempt a second).
FIRST_BACKOFF, MAX_BACKOFF = 0.5, 8.0
DEADLINE_MARGIN = 3.0
UNREACHABLE_ATTEMPTS = 2


def lambda_handler(event, context):
    """Secrets Manager rotation entry point.

    Args:
        event (dict): SecretId, ClientRequestToken, Step (createSecret, setSecret, testSecret,
            finishSecret) and, from Secrets Manager, RotationToken.
        context (LambdaContext): the runtime information (remaining time).

    Raises:
        ValueError: if the secret is not set up for rotation or the version is not pending.
        KeyError: if the event lacks a key.
    """
    step = event.get("Step")
    if step not in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        raise ValueError("Invalid step parameter")
    arn = event["SecretId"]
    token = event["ClientRequestToken"]

    metadata = secretsmanager.describe_secret(SecretId=arn)
    if not metadata.get("RotationEnabled"):
        logger.error("Secret %s is not enabled for rotation", arn)
        raise ValueError("Secret %s is not enabled for rotation" % arn)
    versions = metadata.get("VersionIdsToStages", {})
    if token not in versions:
        logger.error("Secret version %s has no stage for rotation of secret %s.", token, arn)
        raise ValueError("Secret version %s has no stage for rotation of secret %s." % (token, arn))
    if "AWSCURRENT" in versions[token]:
        logger.info("Secret version %s already set as AWSCURRENT for secret %s.", token, arn)
        return
    if "AWSPENDING" not in versions[token]:
        logger.error("Secret version %s not set as AWSPENDING for rotation of secret %s.", token, arn)
        raise ValueError("Secret version %s not set as AWSPENDING for rotation of secret %s." % (token, arn))

    if step == "createSecret":
        create_secret(arn, token, event.get("RotationToken"))
    elif step == "setSecret":
        set_secret(arn, token)
    elif step == "testSecret":
        test_secret(arn, token, context)
    else:
        finish_secret(arn, token, versions)


def create_secret(arn, token, rotation_token):
    """Create a new access key and store its SMTP credentials as the token's AWSPENDING version.

    Idempotent: a pending version that already holds credentials is left alone. The current
    key is never touched; when the user already has two keys, the other one (the key the last
    rotation retired) is deleted first, since IAM allows two.

    Raises:
        ResourceNotFoundException: if the secret has no AWSCURRENT version.
        ValueError: if the current document lacks a field.
    """
    current = get_document(arn, stage="AWSCURRENT")
    try:
        pending = get_document(arn, stage="AWSPENDING", version=token)
        if pending.get("username"):
            logger.info("createSecret: version %s of %s already holds key %s.", token, arn, pending["username"])
            return
    except secretsmanager.exceptions.ResourceNotFoundException:
        pass

    user = current["iam_user"]
    current_key = current.get("username")
    keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    if len(keys) >= 2:
        for k in keys:
            if k["AccessKeyId"] != current_key:
                iam.delete_access_key(UserName=user, AccessKeyId=k["AccessKeyId"])
                logger.info("createSecret: deleted access key %s of %s (not current).", k["AccessKeyId"], user)
    new = iam_no_retry.create_access_key(UserName=user)["AccessKey"]
    logger.info("createSecret: created access key %s for %s.", new["AccessKeyId"], user)

    doc = dict(current)
    doc["username"] = new["AccessKeyId"]
    doc["password"] = smtp_password(new["SecretAccessKey"], region_of(current))
    args = dict(SecretId=arn, ClientRequestToken=token, SecretString=json.dumps(doc), VersionStages=["AWSPENDING"])
    if rotation_token:
        args["RotationToken"] = rotation_token
    secretsmanager.put_secret_value(**args)
    logger.info("createSecret: stored version %s of %s as AWSPENDING.", token, arn)


def set_secret(arn, token):
    """Confirm the pending key exists in IAM and is Active (createSecret already made it).

    Raises:
        ValueError: if the key is not listed for the user or not Active.
    """
    pending = get_document(arn, stage="AWSPENDING", version=token)
    keys = iam.list_access_keys(UserName=pending["iam_user"])["AccessKeyMetadata"]
    status = {k["AccessKeyId"]: k["Status"] for k in keys}.get(pending["username"])
    if status != "Active":
        raise ValueError("Access key %s of %s is %s, not Active" % (pending["username"], pending["iam_user"], status or "absent"))
    logger.info("setSecret: key %s of %s is Active.", pending["username"], pending["iam_user"])


def test_secret(arn, token, context):
    """Log in at the SMTP endpoint with the pending credentials (TLS, certificate verified).

    A new key is not accepted at once (IAM eventual consistency), so 535 and 454 are retried
    with capped exponential backoff until SMTP_TEST_TIMEOUT_SECONDS or the invocation deadline
    minus a margin. With no pending value (RotateImmediately=false) AWSCURRENT is tested.

    Raises:
        smtplib.SMTPAuthenticationError: if the login is still refused when time is up.
        OSError: if the endpoint cannot be reached twice.
    """
    try:
        doc = get_document(arn, stage="AWSPENDING", version=token)
    except secretsmanager.exceptions.ResourceNotFoundException:
        doc = get_document(arn, stage="AWSCURRENT")
        if not doc.get("username"):
            logger.info("testSecret: %s has no credentials yet; nothing to test.", arn)
            return
    port = int(doc.get("port", 587))
    implicit = doc.get("tls", "implicit" if port in (465, 2465) else "starttls") == "implicit"
    tls = ssl.create_default_context()
    end = time.monotonic() + SMTP_TEST_TIMEOUT
    if context is not None:
        end = min(end, time.monotonic() + context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN)
    start, attempts, unreachable, backoff = time.monotonic(), 0, 0, FIRST_BACKOFF
    while True:
        attempts += 1
        try:
            smtp_login(doc["host"], port, implicit, tls, doc["username"], doc["password"])
            logger.info("testSecret: SES accepted key %s after %d attempt(s), %.1f s.",
                        doc["username"], attempts, time.monotonic() - start)
            return
        except smtplib.SMTPAuthenticationError as e:
            if e.smtp_code not in (535, 454) or time.monotonic() + 0.2 >= end:
                raise
            logger.warning("testSecret: key %s not accepted yet (%d); retrying.", doc["username"], e.smtp_code)
        except (smtplib.SMTPResponseException, ssl.SSLError):
            raise  # another refusal (STARTTLS, a 5xx) or a TLS trust failure: not a propagation lag
        except OSError as e:  # connect, timeout, disconnect (smtplib's errors are OSErrors too)
            unreachable += 1
            if unreachable >= UNREACHABLE_ATTEMPTS or time.monotonic() + 0.2 >= end:
                raise
            logger.warning("testSecret: cannot talk to %s:%d (%s); retrying.", doc["host"], port, type(e).__name__)
        time.sleep(max(0.0, min(backoff * random.uniform(0.75, 1.25), end - time.monotonic())))
        backoff = min(backoff * 2, MAX_BACKOFF)


def finish_secret(arn, token, versions):
    """Move AWSCURRENT to the token's version, then deactivate the old key.

    The preamble already answered a token that is AWSCURRENT (nothing to do).

    Raises:
        ResourceNotFoundException: if the secret does not exist.
    """
    current_version = next((v for v, stages in versions.items() if "AWSCURRENT" in stages), None)
    old = get_document(arn, stage="AWSCURRENT", version=current_version) if current_version else {}
    secretsmanager.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT",
                                               MoveToVersionId=token, RemoveFromVersionId=current_version)
    logger.info("finishSecret: set AWSCURRENT stage to version %s for secret %s.", token, arn)
    if old.get("username"):
        try:
            iam.update_access_key(UserName=old["iam_user"], AccessKeyId=old["username"], Status="Inactive")
            logger.info("finishSecret: deactivated old key %s.", old["username"])
        except iam.exceptions.NoSuchEntityException:
            logger.info("finishSecret: old key %s is already gone.", old["username"])


# --- helpers ---------------------------------------------------------------------------------

def get_document(arn, stage, version=None):
    """The secret document of a version, as a dict (ResourceNotFoundException if no value)."""
    args = dict(SecretId=arn, VersionStage=stage)
    if version:
        args["VersionId"] = version
    doc = json.loads(secretsmanager.get_secret_value(**args)["SecretString"])
    for field in ("iam_user", "host"):
        if not isinstance(doc.get(field), str):
            raise ValueError("The %s version of %s has no %r field" % (stage, arn, field))
    return doc


def region_of(doc):
    """The SES region: the document's "region", or the one in email-smtp.<region>.amazonaws.com."""
    if doc.get("region"):
        return doc["region"]
    parts = doc["host"].split(".")
    if len(parts) > 2 and parts[0] in ("email-smtp", "email-smtp-fips"):
        return parts[1]
    raise ValueError("No region: set \"region\" in the secret or use an SES SMTP host name")


def smtp_password(secret_access_key, region):
    """SES SMTP password from a secret access key: SigV4 derivation, version byte 0x04 first."""
    k = hmac.new(("AWS4" + secret_access_key).encode(), b"11111111", hashlib.sha256).digest()
    for part in (region, "ses", "aws4_request", "SendRawEmail"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return base64.b64encode(b"\x04" + k).decode()


def smtp_login(host, port, implicit, tls, username, password):
    """One TLS connection and AUTH; raises SMTPAuthenticationError on 535/454."""
    if implicit:
        conn = smtplib.SMTP_SSL(host, port, timeout=SMTP_CONNECT_TIMEOUT, context=tls)
    else:
        conn = smtplib.SMTP(host, port, timeout=SMTP_CONNECT_TIMEOUT)
    with conn:
        if not implicit:
            conn.starttls(context=tls)
        conn.login(username, password)
