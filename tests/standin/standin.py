#!/usr/bin/env python3
"""Local stand-in for the AWS services that ses-smtp-rotator talks to.

One process, everything on 127.0.0.1, every port picked by the process itself.
Start it as::

    .venv/bin/python tests/standin/standin.py [--region us-east-1] [--account 123456789012]

When it is ready it prints exactly ONE JSON line on stdout (and flushes)::

    {"endpoint": "http://127.0.0.1:P1", "smtp_host": "127.0.0.1",
     "smtp_starttls_port": P2, "smtp_tls_port": P3, "runtime_api": "127.0.0.1:P4",
     "admin": "http://127.0.0.1:P5", "ca_file": "/tmp/.../ca.pem",
     "region": "us-east-1", "account": "123456789012",
     "function_arn": "arn:aws:lambda:...", "lambda_env": {...}}

``lambda_env`` is a ready-made environment for the real binary (runtime API, function
name/memory/version that the lambda_runtime crate insists on, AWS endpoint, fake
credentials, SSL_CERT_FILE).  Everything else goes to stderr.  The process exits when
its stdin reaches EOF (the parent keeps stdin as a pipe; ``--no-stdin-watch`` turns that
off for manual use), or on SIGTERM/SIGINT.  The temp dir with the certificates is removed
at exit.

The parts
---------
1. **moto** (Secrets Manager + IAM) served over real HTTP by werkzeug, reachable with
   ``AWS_ENDPOINT_URL=<endpoint>`` and any fake credentials.  The WSGI app is wrapped
   in :class:`FaultMiddleware` which can fail the next N matching requests with an
   HTTP 500, either before the action runs (``fail_before``) or after it ran and its
   response is thrown away (``fail_after`` = lost response), or delay them.
   A few moto behaviours are patched to match AWS (see :func:`patch_moto`).
2. **SES SMTP emulator** (aiosmtpd): a STARTTLS listener and an implicit-TLS
   listener with a certificate from a CA made at start (``ca_file``).  AUTH PLAIN/LOGIN
   is accepted only with an IAM access key id that exists in moto, is Active, is older
   than ``propagation_delay_seconds``, and the SES SigV4 SMTP password for the
   emulator's region.  Knobs: ``propagation_delay_seconds``, ``force_454``,
   ``refuse_connections``, ``deny_send_from``, ``deny_at``.  Every AUTH attempt and
   every delivered message is recorded (never the password).
3. **Lambda Runtime API** (``/2018-06-01/runtime/...``) that the real binary polls,
   exactly like in Lambda.
4. **Rotation orchestrator** that behaves like Secrets Manager's RotateSecret: an
   empty AWSPENDING version for the token, then createSecret, setSecret, testSecret,
   finishSecret through the Runtime API, stopping at the first failure.
5. **Admin HTTP API** (JSON) to drive and inspect all of the above; see
   :class:`AdminHandler` for the endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import datetime as dt
import hashlib
import hmac
import io
import ipaddress
import json
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

log = logging.getLogger("standin")

FUNCTION_NAME = "ses-smtp-rotator"
STEPS = ["createSecret", "setSecret", "testSecret", "finishSecret"]

# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds")


def naive_utc_to_epoch(d: dt.datetime) -> float:
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return d.timestamp()


def listening_socket(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    s.setblocking(False)
    return s


def ses_smtp_password_v4(secret: str, region: str) -> str:
    """The SES SMTP password (SigV4 derivation, version byte 0x04 first)."""

    def h(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    k = h(("AWS4" + secret).encode("utf-8"), "11111111")
    for part in (region, "ses", "aws4_request", "SendRawEmail"):
        k = h(k, part)
    return base64.b64encode(b"\x04" + k).decode("ascii")


# ---------------------------------------------------------------------------
# certificates
# ---------------------------------------------------------------------------


def make_certs(directory: str, region: str) -> tuple[str, str, str]:
    """Create a CA and a server certificate (SAN localhost, 127.0.0.1).

    Returns (ca_file, cert_file, key_file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ses-smtp-rotator test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.DNSName(f"email-smtp.{region}.amazonaws.com"),
            ]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(srv_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = os.path.join(directory, "ca.pem")
    cert_file = os.path.join(directory, "server.pem")
    key_file = os.path.join(directory, "server.key")
    with open(ca_file, "wb") as f:
        f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    with open(cert_file, "wb") as f:
        f.write(srv_cert.public_bytes(serialization.Encoding.PEM))
        f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as f:
        f.write(srv_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    return ca_file, cert_file, key_file


# ---------------------------------------------------------------------------
# moto: patches, access to backends, fault injection
# ---------------------------------------------------------------------------


def patch_moto() -> None:
    """Make moto 5 behave like AWS where the rotator depends on it.

    * ListSecretVersionIds: moto reports ``CreatedDate`` = now for every version;
      report the version's real creation time instead.
    * UpdateSecretVersionStage: moto does not move its internal "default version"
      when AWSCURRENT moves, so a later GetSecretValue without VersionStage returned
      the old value; keep it in sync.
    * PutSecretValue: moto silently overwrites a version that carries AWSPENDING even
      when it already has a *different* value; AWS answers ResourceExistsException.
      Filling the empty placeholder that RotateSecret made stays allowed, and it keeps
      the placeholder's creation time (moto reset it).
    * IAM access keys: moto stamps CreateDate with microseconds; IAM answers with
      whole seconds.  CreateDate is truncated to the second like AWS; the precise
      creation time is kept in ``standin_created`` (used for the propagation delay).
    * GetSecretValue of a version that has no value: AWS answers
      ResourceNotFoundException naming the VersionId / staging label asked for; moto
      named "staging label: AWSCURRENT" when asked by VersionId.
    """
    from moto.secretsmanager import models as sm
    from moto.secretsmanager.exceptions import ResourceExistsException, ResourceNotFoundException

    B = sm.SecretsManagerBackend
    if getattr(B, "_standin_patched", False):
        return
    B._standin_patched = True

    def list_secret_version_ids(self, secret_id):  # type: ignore[no-untyped-def]
        if secret_id not in self.secrets:
            raise sm.SecretNotFoundException()
        secret = self.secrets[secret_id]
        versions = []
        for version_id, version in secret.versions.items():
            versions.append({
                "CreatedDate": version.get("createdate"),
                "VersionId": version_id,
                "VersionStages": version["version_stages"],
            })
        return json.dumps({"ARN": secret.arn, "Name": secret.name, "Versions": versions})

    B.list_secret_version_ids = list_secret_version_ids

    orig_update_stage = B.update_secret_version_stage

    def update_secret_version_stage(self, secret_id, version_stage, remove_from_version_id, move_to_version_id):  # type: ignore[no-untyped-def]
        res = orig_update_stage(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
        if version_stage == "AWSCURRENT" and move_to_version_id:
            secret = self.secrets[secret_id]
            secret.set_default_version_id(move_to_version_id)
        return res

    B.update_secret_version_stage = update_secret_version_stage

    orig_put = B.put_secret_value

    def put_secret_value(self, secret_id, secret_string, secret_binary, client_request_token, version_stages):  # type: ignore[no-untyped-def]
        created = None
        if client_request_token and secret_id in self.secrets:
            secret = self.secrets[secret_id]
            existing = secret.versions.get(client_request_token)
            if existing is not None:
                has_value = "secret_string" in existing or "secret_binary" in existing
                if has_value:
                    if existing.get("secret_string") != secret_string or existing.get("secret_binary") != secret_binary:
                        raise ResourceExistsException(
                            f"You can't use ClientRequestToken {client_request_token} because that value is "
                            f"already in use for a version of secret {secret.arn}.")
                    return secret.to_short_dict(include_version_stages=True, version_id=client_request_token)
                created = existing.get("createdate")
        res = orig_put(self, secret_id, secret_string, secret_binary, client_request_token, version_stages)
        if created is not None:
            v = self.secrets[secret_id].versions.get(client_request_token)
            if v is not None:
                v["createdate"] = created
        return res

    B.put_secret_value = put_secret_value

    orig_get = B.get_secret_value

    def get_secret_value(self, secret_id, version_id, version_stage):  # type: ignore[no-untyped-def]
        try:
            return orig_get(self, secret_id, version_id, version_stage)
        except ResourceNotFoundException as e:
            if version_id and secret_id in self.secrets and version_id in self.secrets[secret_id].versions:
                raise ResourceNotFoundException(
                    f"Secrets Manager can't find the specified secret value for VersionId: {version_id}") from e
            raise
        except sm.SecretHasNoValueException as e:  # type: ignore[attr-defined]
            if version_id:
                raise ResourceNotFoundException(
                    f"Secrets Manager can't find the specified secret value for VersionId: {version_id}") from e
            raise

    B.get_secret_value = get_secret_value

    from moto.iam import models as iam_models

    orig_key_init = iam_models.AccessKey.__init__

    def key_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        orig_key_init(self, *args, **kwargs)
        self.standin_created = time.time()
        # Every secret ever minted, for the tests' leak scans (GET /secrets-seen).
        SECRETS_SEEN.append({"access_key_id": self.access_key_id,
                             "secret_access_key": self.secret_access_key})
        self.create_date = self.create_date.replace(microsecond=0)

    iam_models.AccessKey.__init__ = key_init

    orig_list_keys = iam_models.IAMBackend.list_access_keys

    def list_access_keys(self, user_name):  # type: ignore[no-untyped-def]
        keys = orig_list_keys(self, user_name)
        lag = float(IAM_CONFIG.get("list_lag_seconds") or 0)
        if lag <= 0:
            return keys
        now = time.time()
        return [k for k in keys if now - key_created(k) >= lag]

    iam_models.IAMBackend.list_access_keys = list_access_keys


# IAM knobs. list_lag_seconds: ListAccessKeys leaves out keys younger than this, as IAM's
# eventual consistency can right after CreateAccessKey.
DEFAULT_IAM_CONFIG: dict[str, float] = {"list_lag_seconds": 0.0}
IAM_CONFIG: dict[str, float] = dict(DEFAULT_IAM_CONFIG)

# Test-only record of every secret access key moto minted (deleted keys included), so that
# tests can scan the rotator's output for each of them.
SECRETS_SEEN: list[dict[str, str]] = []


def key_created(key) -> float:  # type: ignore[no-untyped-def]
    """Precise creation time (epoch seconds) of a moto access key."""
    return getattr(key, "standin_created", None) or naive_utc_to_epoch(key.create_date)


class Moto:
    """Direct access to moto's in-process backends (same process as the server)."""

    def __init__(self, account: str, region: str):
        self.account = account
        self.region = region

    def iam(self):  # type: ignore[no-untyped-def]
        from moto.iam.models import iam_backends

        return iam_backends[self.account]["aws"]

    def sm(self):  # type: ignore[no-untyped-def]
        from moto.secretsmanager.models import secretsmanager_backends

        return secretsmanager_backends[self.account][self.region]

    def secret(self, secret_id: str):  # type: ignore[no-untyped-def]
        backend = self.sm()
        if secret_id not in backend.secrets:
            raise ApiError(404, "ResourceNotFoundException", f"secret {secret_id!r} not found")
        return backend.secrets[secret_id]

    def access_key(self, key_id: str):  # type: ignore[no-untyped-def]
        return self.iam().access_keys.get(key_id)

    def keys(self, user: str | None = None) -> list[dict[str, Any]]:
        out = []
        now = time.time()
        for name, u in list(self.iam().users.items()):
            if user is not None and name != user:
                continue
            for k in list(u.access_keys):
                out.append({
                    "access_key_id": k.access_key_id,
                    "user_name": name,
                    "status": k.status,
                    "age_seconds": round(now - key_created(k), 3),
                    "create_date": iso(naive_utc_to_epoch(k.create_date)),
                })
        return out

    def reset(self) -> None:
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()


def _service_of(environ: dict[str, Any]) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target.startswith("secretsmanager."):
        return "secretsmanager"
    auth = environ.get("HTTP_AUTHORIZATION", "")
    # Credential=AKID/20240101/us-east-1/iam/aws4_request
    if "/iam/aws4_request" in auth:
        return "iam"
    if "/secretsmanager/aws4_request" in auth:
        return "secretsmanager"
    return ""


class FaultMiddleware:
    """WSGI middleware: identifies the AWS action and injects configured faults.

    A fault is {"service", "action", "mode", "count", ...}:
      mode fail_before  -> HTTP 500 without performing the action
      mode fail_after   -> the action is performed, its response is replaced by a 500
      mode delay        -> sleep ``delay_seconds`` then perform normally
    ``count`` = number of matching requests to affect (-1 = forever).
    Optional "status" (default 500), "code", "message" override the error.
    Also records every request (service, action, status) for GET /requests.
    """

    def __init__(self, app, on_action=None):  # type: ignore[no-untyped-def]
        self.app = app
        self.lock = threading.Lock()
        self.faults: list[dict[str, Any]] = []
        self.requests: collections.deque = collections.deque(maxlen=2000)
        self.on_action = on_action

    def add(self, fault: dict[str, Any]) -> dict[str, Any]:
        f = {
            "service": fault.get("service", "*"),
            "action": fault.get("action", "*"),
            "mode": fault.get("mode", "fail_before"),
            "count": int(fault.get("count", 1)),
            "hits": 0,
        }
        for opt in ("status", "code", "message", "delay_seconds"):
            if opt in fault:
                f[opt] = fault[opt]
        if f["mode"] not in ("fail_before", "fail_after", "delay"):
            raise ApiError(400, "ValidationError", "mode must be fail_before, fail_after or delay")
        with self.lock:
            self.faults.append(f)
        return f

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()

    def list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(f) for f in self.faults]

    def _take(self, service: str, action: str) -> dict[str, Any] | None:
        with self.lock:
            for f in self.faults:
                if f["service"] not in ("*", service) or f["action"] not in ("*", action):
                    continue
                if f["count"] == 0:
                    continue
                if f["count"] > 0:
                    f["count"] -= 1
                f["hits"] += 1
                snapshot = dict(f)
                self.faults = [x for x in self.faults if x["count"] != 0]
                return snapshot
        return None

    @staticmethod
    def _error(service: str, action: str, f: dict[str, Any]):  # type: ignore[no-untyped-def]
        status = int(f.get("status", 500))
        rid = str(uuid.uuid4())
        if service == "iam":
            code = f.get("code", "ServiceFailure")
            msg = f.get("message", f"Injected fault on {action} (standin)")
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<ErrorResponse><Error><Type>Receiver</Type><Code>{code}</Code>"
                f"<Message>{msg}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>"
            ).encode()
            ctype = "text/xml"
        else:
            code = f.get("code", "InternalServiceError")
            msg = f.get("message", f"Injected fault on {action} (standin)")
            body = json.dumps({"__type": code, "message": msg}).encode()
            ctype = "application/x-amz-json-1.1"
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body))),
                   ("x-amzn-RequestId", rid), ("x-amzn-ErrorType", code)]
        return f"{status} Injected", headers, body

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        service = _service_of(environ)
        action = ""
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target and "." in target:
            action = target.split(".", 1)[1]
        else:
            # Form-encoded query protocol (IAM): Action in the body or the query string.
            body = b""
            length = environ.get("CONTENT_LENGTH")
            try:
                if length:
                    body = environ["wsgi.input"].read(int(length))
                elif environ.get("wsgi.input_terminated"):
                    body = environ["wsgi.input"].read()
            except Exception:  # pragma: no cover
                body = b""
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            params = parse_qs(environ.get("QUERY_STRING", ""))
            if "form" in environ.get("CONTENT_TYPE", "") or not environ.get("CONTENT_TYPE"):
                try:
                    params.update(parse_qs(body.decode("utf-8")))
                except UnicodeDecodeError:
                    pass
            action = (params.get("Action") or [""])[0]
        entry = {"time": time.time(), "service": service, "action": action}
        self.requests.append(entry)
        fault = self._take(service, action) if action else None
        if fault is not None:
            log.info("fault %s on %s:%s", fault["mode"], service, action)
            entry["fault"] = fault["mode"]
            if fault["mode"] == "delay":
                time.sleep(float(fault.get("delay_seconds", 1)))
                fault = None
        if fault is not None and fault["mode"] == "fail_before":
            status, headers, body = self._error(service, action, fault)
            start_response(status, headers)
            entry["status"] = int(status.split()[0])
            return [body]
        if fault is not None and fault["mode"] == "fail_after":
            captured: dict[str, Any] = {}

            def fake_start(status, headers, exc_info=None):  # type: ignore[no-untyped-def]
                captured["status"] = status
                return lambda data: None

            result = self.app(environ, fake_start)
            try:
                for _ in result:
                    pass
            finally:
                if hasattr(result, "close"):
                    result.close()
            entry["performed_status"] = captured.get("status")
            status, headers, body = self._error(service, action, fault)
            start_response(status, headers)
            entry["status"] = int(status.split()[0])
            return [body]

        def recording_start(status, headers, exc_info=None):  # type: ignore[no-untyped-def]
            try:
                entry["status"] = int(status.split()[0])
            except ValueError:
                pass
            return start_response(status, headers, exc_info)

        return self.app(environ, recording_start)


# ---------------------------------------------------------------------------
# SES SMTP emulator
# ---------------------------------------------------------------------------


DEFAULT_SMTP_CONFIG: dict[str, Any] = {
    "propagation_delay_seconds": 0.0,
    "force_454": 0,
    "refuse_connections": False,  # False | True/"close" | "refuse" | "hang"
    "deny_send_from": [],
    "deny_at": "data",  # "data" (like SES, after the message) | "mail"
}


class SesSmtp:
    """SES SMTP emulator: two listeners sharing one asyncio loop in a thread."""

    def __init__(self, moto: Moto, region: str, account: str, cert_file: str, key_file: str):
        import ssl

        self.moto = moto
        self.region = region
        self.account = account
        self.lock = threading.Lock()
        self.config: dict[str, Any] = json.loads(json.dumps(DEFAULT_SMTP_CONFIG))
        self.logins: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.connections = 0
        self.ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ssl_ctx.load_cert_chain(cert_file, key_file)
        self.loop = asyncio.new_event_loop()
        self.servers: dict[str, Any] = {}
        self.starttls_sock = listening_socket()
        self.tls_sock = listening_socket()
        self.starttls_port = self.starttls_sock.getsockname()[1]
        self.tls_port = self.tls_sock.getsockname()[1]
        self.hostname = f"email-smtp.{region}.amazonaws.com"
        self._listening = False

    # -- configuration and records -------------------------------------------------
    def set_config(self, patch: dict[str, Any]) -> dict[str, Any]:
        unknown = set(patch) - set(DEFAULT_SMTP_CONFIG)
        if unknown:
            raise ApiError(400, "ValidationError", f"unknown knobs: {sorted(unknown)}")
        with self.lock:
            self.config.update(patch)
            if isinstance(self.config["deny_send_from"], str):
                self.config["deny_send_from"] = [self.config["deny_send_from"]]
            cfg = dict(self.config)
        want_listen = cfg["refuse_connections"] != "refuse"
        fut = asyncio.run_coroutine_threadsafe(self._set_listening(want_listen), self.loop)
        fut.result(10)
        return cfg

    def get_config(self) -> dict[str, Any]:
        with self.lock:
            return json.loads(json.dumps(self.config))

    def clear(self, config_too: bool = False) -> None:
        with self.lock:
            self.logins.clear()
            self.messages.clear()
        if config_too:
            self.set_config(json.loads(json.dumps(DEFAULT_SMTP_CONFIG)))

    # -- the authenticator ---------------------------------------------------------
    def authenticate(self, server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        from aiosmtpd.smtp import AuthResult

        try:
            username = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
        except Exception:
            username, password = "", ""
        rec = {
            "time": time.time(),
            "username": username,
            "mechanism": mechanism,
            "port": server.standin_port,
            "tls_mode": server.standin_mode,
        }
        code, reason, user_name = self._check(username, password)
        rec["code"] = code
        rec["reason"] = reason
        with self.lock:
            self.logins.append(rec)
        log.info("SMTP AUTH %s user=%s port=%s -> %s (%s)", mechanism, username, server.standin_port, code, reason)
        if code == 235:
            session.standin_key_id = username
            session.standin_user_name = user_name
            return AuthResult(success=True, auth_data=username, message="235 Authentication successful.")
        if code == 454:
            return AuthResult(success=False, handled=False, message="454 4.7.0 Temporary authentication failure")
        return AuthResult(success=False, handled=False, message="535 Authentication Credentials Invalid")

    def _check(self, username: str, password: str) -> tuple[int, str, str | None]:
        with self.lock:
            f454 = int(self.config.get("force_454") or 0)
            if f454 != 0:
                if f454 > 0:
                    self.config["force_454"] = f454 - 1
                return 454, "force_454", None
            delay = float(self.config.get("propagation_delay_seconds") or 0)
        key = self.moto.access_key(username)
        if key is None:
            return 535, "unknown_key", None
        if key.status != "Active":
            return 535, "inactive_key", key.user_name
        age = time.time() - key_created(key)
        if age < delay:
            return 535, "propagation_delay", key.user_name
        expected = ses_smtp_password_v4(key.secret_access_key, self.region)
        if not hmac.compare_digest(expected.encode(), password.encode()):
            return 535, "bad_password", key.user_name
        return 235, "ok", key.user_name

    # -- handler hooks ---------------------------------------------------------------
    def _denied(self, mail_from: str) -> bool:
        with self.lock:
            deny = [d.lower() for d in self.config.get("deny_send_from") or []]
        return (mail_from or "").lower() in deny

    def _deny_message(self, session, mail_from: str) -> str:  # type: ignore[no-untyped-def]
        user = getattr(session, "standin_user_name", None) or "unknown"
        domain = mail_from.rsplit("@", 1)[-1] if "@" in mail_from else mail_from
        return (f"554 Access denied: User `arn:aws:iam::{self.account}:user/{user}' is not authorized to "
                f"perform `ses:SendRawEmail' on resource `arn:aws:ses:{self.region}:{self.account}:identity/{domain}'")

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # type: ignore[no-untyped-def]
        with self.lock:
            deny_at = self.config.get("deny_at", "data")
        if deny_at == "mail" and self._denied(address):
            return self._deny_message(session, address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 Ok"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self._denied(envelope.mail_from):
            return self._deny_message(session, envelope.mail_from)
        content = envelope.original_content or b""
        subject = None
        for line in content.split(b"\r\n"):
            if not line:
                break
            if line.lower().startswith(b"subject:"):
                subject = line[8:].strip().decode("utf-8", "replace")
        rec = {
            "time": time.time(),
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "size": len(content),
            "subject": subject,
            "key_id": getattr(session, "standin_key_id", None),
            "user_name": getattr(session, "standin_user_name", None),
            "port": server.standin_port,
            "tls_mode": server.standin_mode,
        }
        with self.lock:
            self.messages.append(rec)
        message_id = f"0100{uuid.uuid4().hex}-000000"
        return f"250 Ok {message_id}"

    # -- listeners -------------------------------------------------------------------
    def _factory(self, mode: str):  # type: ignore[no-untyped-def]
        from aiosmtpd.smtp import SMTP

        standin = self
        port = self.starttls_port if mode == "starttls" else self.tls_port

        class StandinSMTP(SMTP):
            standin_mode = mode
            standin_port = port

            def connection_made(self, transport):  # type: ignore[no-untyped-def]
                with standin.lock:
                    refuse = standin.config.get("refuse_connections")
                    standin.connections += 1
                if refuse is True or refuse == "close":
                    transport.abort()
                    return
                if refuse == "hang":
                    self._standin_hung = transport
                    return
                super().connection_made(transport)

            def connection_lost(self, exc):  # type: ignore[no-untyped-def]
                if self.session is None:
                    return
                super().connection_lost(exc)

            def data_received(self, data):  # type: ignore[no-untyped-def]
                if getattr(self, "_standin_hung", None) is not None:
                    return
                super().data_received(data)

            def eof_received(self):  # type: ignore[no-untyped-def]
                if getattr(self, "_standin_hung", None) is not None:
                    return False
                return super().eof_received()

        def make():  # type: ignore[no-untyped-def]
            if mode == "starttls":
                return StandinSMTP(
                    standin, hostname=self.hostname, ident="SimpleEmailService-standin",
                    tls_context=self.ssl_ctx, require_starttls=True, auth_required=True,
                    auth_require_tls=True, authenticator=self.authenticate,
                    auth_exclude_mechanism=[], timeout=60,
                )
            return StandinSMTP(
                standin, hostname=self.hostname, ident="SimpleEmailService-standin",
                tls_context=None, require_starttls=False, auth_required=True,
                auth_require_tls=False, authenticator=self.authenticate, timeout=60,
            )

        return make

    async def _set_listening(self, on: bool) -> None:
        if on == self._listening:
            return
        if on:
            if self.starttls_sock is None:
                self.starttls_sock = listening_socket(self.starttls_port)
                self.tls_sock = listening_socket(self.tls_port)
            self.servers["starttls"] = await self.loop.create_server(
                self._factory("starttls"), sock=self.starttls_sock)
            self.servers["implicit"] = await self.loop.create_server(
                self._factory("implicit"), sock=self.tls_sock, ssl=self.ssl_ctx,
                ssl_handshake_timeout=10)
            self._listening = True
        else:
            for srv in self.servers.values():
                srv.close()
            for srv in self.servers.values():
                await srv.wait_closed()
            self.servers.clear()
            self.starttls_sock = None
            self.tls_sock = None
            self._listening = False

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self._set_listening(True))
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=run, name="smtp", daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("SMTP listeners did not start")


# ---------------------------------------------------------------------------
# Lambda Runtime API
# ---------------------------------------------------------------------------


class Invocation:
    def __init__(self, event: Any, deadline_seconds: float, function_arn: str):
        self.id = str(uuid.uuid4())
        self.body = json.dumps(event).encode()
        self.event = event
        self.created = time.time()
        self.deadline_ms = now_ms() + int(deadline_seconds * 1000)
        self.function_arn = function_arn
        self.trace_id = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"
        self.delivered_at: float | None = None
        self.done = threading.Event()
        self.result: dict[str, Any] | None = None

    def finish(self, result: dict[str, Any]) -> bool:
        if self.done.is_set():
            return False
        self.result = result
        self.done.set()
        return True

    def summary(self) -> dict[str, Any]:
        return {
            "request_id": self.id,
            "event": self.event,
            "created": self.created,
            "deadline_ms": self.deadline_ms,
            "delivered": self.delivered_at is not None,
            "done": self.done.is_set(),
            "result": self.result,
        }


class RuntimeApi:
    """State of the Runtime API: queued invocations and those in flight."""

    def __init__(self, function_arn: str):
        self.function_arn = function_arn
        self.cond = threading.Condition()
        self.queue: collections.deque[Invocation] = collections.deque()
        self.by_id: dict[str, Invocation] = {}
        self.history: collections.deque[Invocation] = collections.deque(maxlen=500)
        self.init_errors: list[dict[str, Any]] = []
        self.polls = 0

    def enqueue(self, event: Any, deadline_seconds: float) -> Invocation:
        inv = Invocation(event, deadline_seconds, self.function_arn)
        with self.cond:
            self.by_id[inv.id] = inv
            self.history.append(inv)
            self.queue.append(inv)
            self.cond.notify_all()
        return inv

    def invoke(self, event: Any, deadline_seconds: float, grace: float | None = None) -> tuple[Invocation, dict[str, Any]]:
        """Queue an invocation and wait for its outcome (or the deadline plus a grace)."""
        if grace is None:
            grace = min(3.0, max(0.3, deadline_seconds * 0.1))
        t0 = time.time()
        inv = self.enqueue(event, deadline_seconds)
        finished = inv.done.wait(deadline_seconds + grace)
        if not finished:
            with self.cond:
                try:
                    self.queue.remove(inv)
                    never_polled = True
                except ValueError:
                    never_polled = False
            msg = f"Task timed out after {deadline_seconds:.2f} seconds"
            if never_polled:
                msg += " (no runtime polled /invocation/next)"
            inv.finish({"ok": False, "error_type": "Sandbox.Timedout", "error_message": msg})
        res = dict(inv.result or {})
        res["duration_ms"] = int((time.time() - t0) * 1000)
        res["deadline_ms"] = inv.deadline_ms
        res["request_id"] = inv.id
        return inv, res

    def next(self, handler: BaseHTTPRequestHandler) -> Invocation | None:
        with self.cond:
            self.polls += 1
        while True:
            with self.cond:
                while not self.queue:
                    self.cond.wait(0.5)
                    if not self.queue and client_gone(handler):
                        return None
                inv = self.queue.popleft()
            if client_gone(handler):
                with self.cond:
                    self.queue.appendleft(inv)
                    self.cond.notify_all()
                return None
            inv.delivered_at = time.time()
            return inv

    def requeue(self, inv: Invocation) -> None:
        with self.cond:
            inv.delivered_at = None
            self.queue.appendleft(inv)
            self.cond.notify_all()

    def init_error(self, body: Any) -> None:
        self.init_errors.append({"time": time.time(), "error": body})
        # Like Lambda: the invocation that triggered the init fails with the init error.
        with self.cond:
            inv = self.queue.popleft() if self.queue else None
        if inv is not None:
            et = body.get("errorType") if isinstance(body, dict) else None
            em = body.get("errorMessage") if isinstance(body, dict) else None
            inv.finish({"ok": False, "error_type": et or "Runtime.InitError", "error_message": em or str(body),
                        "init_error": True})

    def clear(self) -> None:
        with self.cond:
            for inv in list(self.queue):
                inv.finish({"ok": False, "error_type": "Standin.Reset", "error_message": "standin reset"})
            self.queue.clear()
            self.history.clear()
            self.init_errors.clear()


def client_gone(handler: BaseHTTPRequestHandler) -> bool:
    """True when the peer of a long-poll has closed its connection."""
    sock = handler.connection
    try:
        r, _, _ = select.select([sock], [], [], 0)
        if not r:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # noqa: D401
        log.debug("%s %s", self.address_string(), fmt % args)

    def read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            return self.rfile.read(n)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return b""

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class RuntimeHandler(QuietHandler):
    runtime: RuntimeApi  # set on the subclass

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/2018-06-01/runtime/invocation/next":
            self.send_json(404, {"errorType": "NotFound", "errorMessage": self.path})
            return
        inv = self.runtime.next(self)
        if inv is None:
            self.close_connection = True
            return
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(inv.body)))
            self.send_header("Lambda-Runtime-Aws-Request-Id", inv.id)
            self.send_header("Lambda-Runtime-Deadline-Ms", str(inv.deadline_ms))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn", inv.function_arn)
            self.send_header("Lambda-Runtime-Trace-Id", inv.trace_id)
            self.end_headers()
            self.wfile.write(inv.body)
            self.wfile.flush()
        except OSError:
            self.runtime.requeue(inv)
            self.close_connection = True

    def do_POST(self) -> None:
        body = self.read_body()
        parts = self.path.strip("/").split("/")
        # 2018-06-01/runtime/invocation/{id}/response|error ; 2018-06-01/runtime/init/error
        if parts[:3] == ["2018-06-01", "runtime", "init"] and parts[3:] == ["error"]:
            self.runtime.init_error(parse_json(body))
            log.info("runtime init error: %s", body[:500])
            self.send_json(202, {"status": "OK"})
            return
        if len(parts) == 5 and parts[:3] == ["2018-06-01", "runtime", "invocation"] and parts[4] in ("response", "error"):
            inv = self.runtime.by_id.get(parts[3])
            if inv is None:
                self.send_json(400, {"errorType": "InvalidRequestID", "errorMessage": "unknown request id"})
                return
            if parts[4] == "response":
                accepted = inv.finish({"ok": True, "response": parse_json(body)})
            else:
                err = parse_json(body)
                et = err.get("errorType") if isinstance(err, dict) else None
                em = err.get("errorMessage") if isinstance(err, dict) else None
                accepted = inv.finish({
                    "ok": False,
                    "error_type": et or self.headers.get("Lambda-Runtime-Function-Error-Type") or "Unhandled",
                    "error_message": em if em is not None else (body.decode("utf-8", "replace") if body else ""),
                })
            if not accepted:
                log.warning("late or duplicate %s for %s ignored", parts[4], inv.id)
            self.send_json(202, {"status": "OK"})
            return
        self.send_json(404, {"errorType": "NotFound", "errorMessage": self.path})


def parse_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# rotation orchestrator
# ---------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, error_type: str, message: str):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


class Orchestrator:
    """Behaves like Secrets Manager's RotateSecret, invoking through the Runtime API."""

    def __init__(self, moto: Moto, runtime: RuntimeApi, function_arn: str):
        self.moto = moto
        self.runtime = runtime
        self.function_arn = function_arn
        self.lock = threading.Lock()  # one rotation at a time

    def set_rotation(self, secret_id: str, enabled: bool) -> dict[str, Any]:
        s = self.moto.secret(secret_id)
        s.rotation_requested = True
        s.rotation_enabled = bool(enabled)
        if not s.rotation_lambda_arn:
            s.rotation_lambda_arn = self.function_arn
        if enabled and not s.auto_rotate_after_days:
            s.auto_rotate_after_days = 30
        return {"arn": s.arn, "rotation_enabled": s.rotation_enabled}

    def versions(self, secret_id: str) -> list[dict[str, Any]]:
        s = self.moto.secret(secret_id)
        out = []
        for vid, v in s.versions.items():
            out.append({
                "version_id": vid,
                "stages": list(v["version_stages"]),
                "has_value": "secret_string" in v or "secret_binary" in v,
                "created_date": v.get("createdate"),
            })
        return out

    def create_pending(self, secret_id: str, token: str | None, force: bool = True) -> tuple[Any, str, bool]:
        """Empty AWSPENDING version for the token (reused when it exists).

        Returns (secret, token, created)."""
        s = self.moto.secret(secret_id)
        token = token or str(uuid.uuid4())
        if not 32 <= len(token) <= 64:
            raise ApiError(400, "InvalidParameterException", "ClientRequestToken must be 32-64 characters long.")
        for vid, v in s.versions.items():
            st = v["version_stages"]
            if vid != token and "AWSPENDING" in st and "AWSCURRENT" not in st and not force:
                raise ApiError(409, "InvalidRequestException",
                               "A previous rotation isn't complete. That rotation will be reattempted.")
        # AWSPENDING may sit on another version (finished rotation on AWSCURRENT, or a stale one).
        for vid, v in s.versions.items():
            if vid != token and "AWSPENDING" in v["version_stages"]:
                v["version_stages"].remove("AWSPENDING")
        if token in s.versions:
            v = s.versions[token]
            if "AWSPENDING" not in v["version_stages"] and "AWSCURRENT" not in v["version_stages"]:
                v["version_stages"].append("AWSPENDING")
            return s, token, False
        s.versions[token] = {
            "createdate": round(time.time(), 3),
            "version_id": token,
            "version_stages": ["AWSPENDING"],
        }
        return s, token, True

    def rotate(self, secret_id: str, token: str | None, rotate_immediately: bool = True,
               deadline_seconds: float = 300, force: bool = False) -> dict[str, Any]:
        with self.lock:
            s = self.moto.secret(secret_id)
            if not s.rotation_enabled or not s.rotation_lambda_arn:
                self.set_rotation(secret_id, True)
            try:
                s, token, created = self.create_pending(secret_id, token, force=force)
            except ApiError as e:
                return {"token": token, "ok": False, "error_type": e.error_type, "error_message": e.message,
                        "steps": []}
            rotation_token = str(uuid.uuid4())
            steps = STEPS if rotate_immediately else ["testSecret"]
            results = []
            ok = True
            for step in steps:
                event = {"Step": step, "SecretId": s.arn, "ClientRequestToken": token,
                         "RotationToken": rotation_token}
                log.info("rotation %s: invoking %s", token, step)
                _, res = self.runtime.invoke(event, deadline_seconds)
                r = {"step": step, "ok": res.get("ok", False), "duration_ms": res["duration_ms"]}
                for k in ("error_type", "error_message", "response"):
                    if res.get(k) is not None:
                        r[k] = res[k]
                results.append(r)
                if not r["ok"]:
                    ok = False
                    break
            if rotate_immediately and ok:
                v = s.versions.get(token)
                if v is not None and "AWSPENDING" in v["version_stages"]:
                    v["version_stages"].remove("AWSPENDING")
                s.last_rotation_date = int(time.time())
            if not rotate_immediately:
                v = s.versions.get(token)
                if created and v is not None and "secret_string" not in v and "secret_binary" not in v:
                    del s.versions[token]
                elif v is not None and "AWSPENDING" in v["version_stages"]:
                    v["version_stages"].remove("AWSPENDING")
            current = [vid for vid, v in s.versions.items() if "AWSCURRENT" in v["version_stages"]]
            return {
                "token": token,
                "rotation_token": rotation_token,
                "ok": ok,
                "steps": results,
                "current_version": current[0] if current else None,
                "versions": self.versions(secret_id),
            }


# ---------------------------------------------------------------------------
# admin API
# ---------------------------------------------------------------------------


class Standin:
    def __init__(self, region: str, account: str):
        self.region = region
        self.account = account
        self.tmpdir = tempfile.mkdtemp(prefix="ses-standin-")
        self.function_arn = f"arn:aws:lambda:{region}:{account}:function:{FUNCTION_NAME}"
        self.moto = Moto(account, region)
        self.runtime = RuntimeApi(self.function_arn)
        self.orchestrator = Orchestrator(self.moto, self.runtime, self.function_arn)
        self.servers: list[Any] = []

    def start(self) -> dict[str, Any]:
        from werkzeug.serving import make_server

        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        patch_moto()
        ca_file, cert_file, key_file = make_certs(self.tmpdir, self.region)

        # 1. moto
        self.faults = FaultMiddleware(DomainDispatcherApplication(create_backend_app))
        moto_srv = make_server("127.0.0.1", 0, self.faults, threaded=True, request_handler=MotoRequestHandler)
        self.servers.append(moto_srv)
        threading.Thread(target=moto_srv.serve_forever, name="moto", daemon=True).start()
        moto_port = moto_srv.server_address[1]

        # 2. SMTP
        self.smtp = SesSmtp(self.moto, self.region, self.account, cert_file, key_file)
        self.smtp.start()

        # 3. Runtime API
        runtime_handler = type("BoundRuntimeHandler", (RuntimeHandler,), {"runtime": self.runtime})
        rt_srv = ThreadingHTTPServer(("127.0.0.1", 0), runtime_handler)
        rt_srv.daemon_threads = True
        self.servers.append(rt_srv)
        threading.Thread(target=rt_srv.serve_forever, name="runtime", daemon=True).start()

        # 5. admin
        admin_handler = type("BoundAdminHandler", (AdminHandler,), {"standin": self})
        ad_srv = ThreadingHTTPServer(("127.0.0.1", 0), admin_handler)
        ad_srv.daemon_threads = True
        self.servers.append(ad_srv)
        threading.Thread(target=ad_srv.serve_forever, name="admin", daemon=True).start()

        endpoint = f"http://127.0.0.1:{moto_port}"
        runtime_api = f"127.0.0.1:{rt_srv.server_address[1]}"
        return {
            "endpoint": endpoint,
            "smtp_host": "127.0.0.1",
            "smtp_starttls_port": self.smtp.starttls_port,
            "smtp_tls_port": self.smtp.tls_port,
            "runtime_api": runtime_api,
            "admin": f"http://127.0.0.1:{ad_srv.server_address[1]}",
            "ca_file": ca_file,
            "region": self.region,
            "account": self.account,
            "function_arn": self.function_arn,
            "lambda_env": {
                "AWS_LAMBDA_RUNTIME_API": runtime_api,
                "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{FUNCTION_NAME}",
                "AWS_LAMBDA_LOG_STREAM_NAME": "standin",
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "SSL_CERT_FILE": ca_file,
            },
        }

    def reset(self) -> None:
        self.moto.reset()
        IAM_CONFIG.clear()
        IAM_CONFIG.update(DEFAULT_IAM_CONFIG)
        self.faults.clear()
        self.faults.requests.clear()
        self.smtp.clear(config_too=True)
        self.runtime.clear()

    def cleanup(self) -> None:
        shutil.rmtree(self.tmpdir, ignore_errors=True)


class AdminHandler(QuietHandler):
    """Admin API (JSON in/out).

    POST /rotate          {"secret_id", "token"?, "rotate_immediately"?=true, "deadline_seconds"?=300, "force"?=false}
                          -> {"token", "rotation_token", "ok", "steps": [{"step", "ok", "error_type"?,
                              "error_message"?, "duration_ms", "response"?}], "current_version", "versions"}
    POST /invoke          {"event": <any JSON, sent verbatim>, "deadline_seconds"?=300}
                          -> {"ok", "error_type"?, "error_message"?, "response"?, "duration_ms", "deadline_ms", "request_id"}
    POST /pending         {"secret_id", "token"?} -> {"token", "created"}
    POST /secret/rotation {"secret_id", "enabled"} -> {"arn", "rotation_enabled"}
    GET  /keys[?user=NAME] -> [{"access_key_id", "user_name", "status", "age_seconds", "create_date"}]
    GET  /versions?secret_id=ID -> [{"version_id", "stages", "has_value", "created_date"}]
    GET  /iam/config, POST /iam/config {"list_lag_seconds": N} -> IAM knobs (ListAccessKeys
                          hides keys younger than N s: IAM eventual consistency)
    GET  /smtp/config, POST /smtp/config {knobs...} (partial update) -> the whole config
    GET  /smtp/logins, GET /smtp/messages, POST /smtp/clear
    GET  /faults, POST /faults {"service", "action", "mode", "count"?=1, ...}, DELETE /faults
    GET  /secrets-seen    -> every secret access key minted [{"access_key_id","secret_access_key"}] (test-only)
    GET  /requests        -> the AWS requests seen by moto [{"time","service","action","status","fault"?}]
    GET  /invocations     -> the Runtime API invocations, GET /runtime/init_errors
    POST /reset           -> moto reset + knobs, faults and records cleared
    GET  /health          -> {"ok": true}
    """

    standin: Standin

    def _body(self) -> dict[str, Any]:
        raw = self.read_body()
        if not raw:
            return {}
        try:
            obj = json.loads(raw)
        except ValueError as e:
            raise ApiError(400, "ValidationError", f"invalid JSON: {e}") from e
        if not isinstance(obj, dict):
            raise ApiError(400, "ValidationError", "body must be a JSON object")
        return obj

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path.rstrip("/") or "/"
        st = self.standin
        try:
            body = self._body() if method in ("POST", "PUT") else {}
            route = (method, path)
            if route == ("GET", "/health"):
                out: Any = {"ok": True}
            elif route == ("POST", "/rotate"):
                out = st.orchestrator.rotate(
                    need(body, "secret_id"), body.get("token"),
                    rotate_immediately=bool(body.get("rotate_immediately", True)),
                    deadline_seconds=float(body.get("deadline_seconds", 300)),
                    force=bool(body.get("force", False)))
            elif route == ("POST", "/invoke"):
                if "event" not in body:
                    raise ApiError(400, "ValidationError", "missing 'event'")
                _, res = st.runtime.invoke(body["event"], float(body.get("deadline_seconds", 300)))
                out = res
            elif route == ("POST", "/pending"):
                _, token, created = st.orchestrator.create_pending(need(body, "secret_id"), body.get("token"))
                out = {"token": token, "created": created}
            elif route == ("POST", "/secret/rotation"):
                out = st.orchestrator.set_rotation(need(body, "secret_id"), bool(body.get("enabled", True)))
            elif route == ("GET", "/keys"):
                out = st.moto.keys(q.get("user"))
            elif route == ("GET", "/versions"):
                out = st.orchestrator.versions(need(q, "secret_id"))
            elif route == ("GET", "/iam/config"):
                out = dict(IAM_CONFIG)
            elif route == ("POST", "/iam/config"):
                unknown = set(body) - set(DEFAULT_IAM_CONFIG)
                if unknown:
                    raise ApiError(400, "ValidationError", f"unknown knobs: {sorted(unknown)}")
                IAM_CONFIG.update({k: float(v) for k, v in body.items()})
                out = dict(IAM_CONFIG)
            elif route == ("GET", "/smtp/config"):
                out = st.smtp.get_config()
            elif route == ("POST", "/smtp/config"):
                out = st.smtp.set_config(body)
            elif route == ("GET", "/smtp/logins"):
                with st.smtp.lock:
                    out = list(st.smtp.logins)
            elif route == ("GET", "/smtp/messages"):
                with st.smtp.lock:
                    out = list(st.smtp.messages)
            elif route == ("POST", "/smtp/clear"):
                st.smtp.clear()
                out = {"ok": True}
            elif route == ("GET", "/faults"):
                out = st.faults.list()
            elif route == ("POST", "/faults"):
                out = st.faults.add(body)
            elif route == ("DELETE", "/faults"):
                st.faults.clear()
                out = {"ok": True}
            elif route == ("GET", "/secrets-seen"):
                out = list(SECRETS_SEEN)
            elif route == ("GET", "/requests"):
                out = list(st.faults.requests)
            elif route == ("GET", "/invocations"):
                out = [inv.summary() for inv in list(st.runtime.history)]
            elif route == ("GET", "/runtime/init_errors"):
                out = list(st.runtime.init_errors)
            elif route == ("POST", "/reset"):
                st.reset()
                out = {"ok": True}
            else:
                raise ApiError(404, "NotFound", f"{method} {path}")
            self.send_json(200, out)
        except ApiError as e:
            self.send_json(e.status, {"error_type": e.error_type, "error_message": e.message})
        except Exception as e:  # pragma: no cover - surfaced to the test
            log.error("admin %s %s failed: %s", method, path, traceback.format_exc())
            self.send_json(500, {"error_type": type(e).__name__, "error_message": str(e)})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


def need(d: dict[str, Any], key: str) -> Any:
    if key not in d or d[key] in (None, ""):
        raise ApiError(400, "ValidationError", f"missing '{key}'")
    return d[key]


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--account", default="123456789012")
    ap.add_argument("--no-stdin-watch", action="store_true",
                    help="do not exit on stdin EOF (manual use; stop with Ctrl-C)")
    ap.add_argument("--verbose", "-v", action="store_true", help="debug logging on stderr")
    args = ap.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="standin %(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiosmtpd logs protocol lines at DEBUG (LOGIN answers are base64 secrets): keep it quiet.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    os.environ["MOTO_ACCOUNT_ID"] = args.account
    os.environ.setdefault("AWS_DEFAULT_REGION", args.region)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")

    t0 = time.time()
    standin = Standin(args.region, args.account)
    stop = threading.Event()
    exiting = threading.Lock()

    def shutdown(code: int = 0) -> None:
        if not exiting.acquire(blocking=False):
            return
        standin.cleanup()
        try:
            sys.stderr.flush()
        finally:
            os._exit(code)

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        ready = standin.start()
    except BaseException:
        standin.cleanup()
        raise
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    log.info("ready in %.2fs: %s", time.time() - t0, json.dumps({k: v for k, v in ready.items() if k != "lambda_env"}))

    if not args.no_stdin_watch:
        def watch_stdin() -> None:
            try:
                while sys.stdin.buffer.read1(65536):
                    pass
            except Exception:
                pass
            log.info("stdin closed: exiting")
            shutdown(0)

        threading.Thread(target=watch_stdin, name="stdin", daemon=True).start()

    while not stop.wait(1.0):
        pass
    log.info("signal: exiting")
    shutdown(0)


if __name__ == "__main__":
    main()
