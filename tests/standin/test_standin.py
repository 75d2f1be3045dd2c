"""Tests of the local AWS stand-in (tests/standin/standin.py, the package tests/standin/sesstandin).

Run from the repo root:  .venv/bin/python -m pytest tests/standin -q
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from launch import start_standin, stop_standin  # noqa: E402
from sesstandin.common import ses_smtp_password_v4  # noqa: E402


class Env:
    def __init__(self, proc: subprocess.Popen, ready: dict[str, Any], log_path: Path):
        self.proc = proc
        self.r = ready
        self.log_path = log_path
        kw = dict(endpoint_url=ready["endpoint"], region_name=ready["region"],
                  aws_access_key_id="test", aws_secret_access_key="test",
                  config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
        self.iam = boto3.client("iam", **kw)
        self.sm = boto3.client("secretsmanager", **kw)
        self.ssl = ssl.create_default_context(cafile=ready["ca_file"])

    def admin(self, path: str, body: Any = None, method: str | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.r["admin"] + path, data=data,
                                     method=method or ("POST" if data is not None else "GET"))
        with urllib.request.urlopen(req, timeout=120) as f:
            return json.loads(f.read())

    # SMTP helpers ------------------------------------------------------------------
    def smtp_starttls(self, port: int | None = None) -> smtplib.SMTP:
        s = smtplib.SMTP(self.r["smtp_host"], port or self.r["smtp_starttls_port"], timeout=10)
        s.ehlo()
        s.starttls(context=self.ssl)
        s.ehlo()
        return s

    def smtp_tls(self, port: int | None = None) -> smtplib.SMTP_SSL:
        s = smtplib.SMTP_SSL(self.r["smtp_host"], port or self.r["smtp_tls_port"], timeout=10, context=self.ssl)
        s.ehlo()
        return s

    def new_key(self, user: str = "smtp-user") -> dict[str, Any]:
        try:
            self.iam.create_user(UserName=user)
        except ClientError:
            pass
        return self.iam.create_access_key(UserName=user)["AccessKey"]


def auth(s: smtplib.SMTP, mech: str, user: str, password: str) -> int:
    """AUTH with the given mechanism; returns the final SMTP code."""
    if mech == "PLAIN":
        blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return s.docmd("AUTH", "PLAIN " + blob)[0]
    code, _ = s.docmd("AUTH", "LOGIN")
    assert code == 334
    code, _ = s.docmd(base64.b64encode(user.encode()).decode())
    assert code == 334
    return s.docmd(base64.b64encode(password.encode()).decode())[0]


def pw(secret: str, region: str) -> str:
    return ses_smtp_password_v4(secret, region)


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    log = tmp_path_factory.mktemp("standin") / "standin.log"
    p, ready = start_standin(log)
    yield Env(p, ready, log)
    stop_standin(p)


@pytest.fixture(autouse=True)
def _reset(env):
    env.admin("/reset", {})
    yield


# ---------------------------------------------------------------------------
# a tiny fake Lambda (Python) that polls the Runtime API like the real binary
# ---------------------------------------------------------------------------


class FakeLambda:
    def __init__(self, env: Env, handler: Callable[[dict[str, Any], dict[str, str]], Any]):
        self.env = env
        self.handler = handler
        self.events: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.stopped = False
        self.conn: http.client.HTTPConnection | None = None
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self) -> None:
        host, port = self.env.r["runtime_api"].split(":")
        while True:
            with self.lock:
                if self.stopped:
                    return
                if self.conn is not None:
                    self.conn.close()
                self.conn = http.client.HTTPConnection(host, int(port), timeout=600)
                self.conn.connect()
            try:
                self.conn.request("GET", "/2018-06-01/runtime/invocation/next")
                resp = self.conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException):
                return
            if self.stopped:
                return
            rid = resp.getheader("Lambda-Runtime-Aws-Request-Id")
            hdrs = {k: resp.getheader(k) for k in (
                "Lambda-Runtime-Aws-Request-Id", "Lambda-Runtime-Deadline-Ms",
                "Lambda-Runtime-Invoked-Function-Arn", "Lambda-Runtime-Trace-Id")}
            event = json.loads(body)
            self.events.append(event)
            self.headers.append(hdrs)
            try:
                out = self.handler(event, hdrs)
                path, payload = f"/2018-06-01/runtime/invocation/{rid}/response", out
            except Exception as e:  # noqa: BLE001
                path = f"/2018-06-01/runtime/invocation/{rid}/error"
                payload = {"errorType": type(e).__name__, "errorMessage": str(e)}
            if payload is SILENT:
                continue
            try:
                self.conn.request("POST", path, body=json.dumps(payload),
                                  headers={"Content-Type": "application/json"})
                self.conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                return

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            if self.conn is not None and self.conn.sock is not None:
                try:
                    self.conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.t.join(5)


SILENT = object()


@pytest.fixture
def fake_lambda(env):
    made: list[FakeLambda] = []

    def make(handler):
        fl = FakeLambda(env, handler)
        made.append(fl)
        return fl

    yield make
    for fl in made:
        fl.stop()


def rotation_handler(env: Env, fail_step: str | None = None) -> Callable:
    """A minimal rotation function working against moto through boto3."""

    def handle(event, _hdrs):
        step, arn, token = event["Step"], event["SecretId"], event["ClientRequestToken"]
        if step == fail_step:
            raise RuntimeError(f"{step} failed on purpose")
        if step == "createSecret":
            try:
                env.sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
            except ClientError as e:
                assert e.response["Error"]["Code"] == "ResourceNotFoundException"
                cur = json.loads(env.sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"])
                cur["n"] = cur.get("n", 0) + 1
                env.sm.put_secret_value(SecretId=arn, ClientRequestToken=token, SecretString=json.dumps(cur),
                                        VersionStages=["AWSPENDING"])
        elif step == "testSecret":
            try:
                env.sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
            except ClientError as e:
                return {"pending_empty": e.response["Error"]["Code"]}
        elif step == "finishSecret":
            d = env.sm.describe_secret(SecretId=arn)
            cur = [v for v, st in d["VersionIdsToStages"].items() if "AWSCURRENT" in st][0]
            if cur != token:
                env.sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT",
                                                   MoveToVersionId=token, RemoveFromVersionId=cur)
        return None

    return handle


# ---------------------------------------------------------------------------
# SES SMTP emulator
# ---------------------------------------------------------------------------


def test_published_vector():
    assert pw("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-2") == "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS"


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_auth_ok(env, mode, mech):
    k = env.new_key()
    s = env.smtp_starttls() if mode == "starttls" else env.smtp_tls()
    assert "auth" in s.esmtp_features and "PLAIN" in s.esmtp_features["auth"] and "LOGIN" in s.esmtp_features["auth"]
    assert auth(s, mech, k["AccessKeyId"], pw(k["SecretAccessKey"], env.r["region"])) == 235
    s.quit()
    logins = env.admin("/smtp/logins")
    assert logins[-1]["code"] == 235 and logins[-1]["mechanism"] == mech
    assert logins[-1]["tls_mode"] == mode and logins[-1]["username"] == k["AccessKeyId"]


def test_smtplib_login(env):
    k = env.new_key()
    s = env.smtp_starttls()
    s.login(k["AccessKeyId"], pw(k["SecretAccessKey"], env.r["region"]))
    s.quit()


def test_auth_rejections(env):
    k = env.new_key()
    secret, kid, region = k["SecretAccessKey"], k["AccessKeyId"], env.r["region"]
    sig = base64.b64decode(pw(secret, region))[1:]
    v2 = base64.b64encode(b"\x02" + hmac.new(secret.encode(), b"SendRawEmail", hashlib.sha256).digest()).decode()
    appended = base64.b64encode(sig + b"\x04").decode()
    cases = [
        (kid, pw(secret, "us-west-2"), "bad_password"),  # wrong region
        (kid, v2, "bad_password"),  # legacy V2
        (kid, appended, "bad_password"),  # version byte after the signature
        (kid, secret, "bad_password"),  # raw secret as password
        ("AKIAIOSFODNN7EXAMPLE", pw(secret, region), "unknown_key"),
    ]
    for user, password, reason in cases:
        s = env.smtp_starttls()
        assert auth(s, "PLAIN", user, password) == 535
        s.close()
        assert env.admin("/smtp/logins")[-1]["reason"] == reason
    # the 535 text
    s = env.smtp_tls()
    code, msg = s.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0{kid}\0{v2}".encode()).decode())
    assert (code, msg) == (535, b"Authentication Credentials Invalid")
    s.close()
    # inactive key
    env.iam.update_access_key(UserName="smtp-user", AccessKeyId=kid, Status="Inactive")
    s = env.smtp_starttls()
    assert auth(s, "LOGIN", kid, pw(secret, region)) == 535
    s.close()
    assert env.admin("/smtp/logins")[-1]["reason"] == "inactive_key"
    # deleted key
    env.iam.delete_access_key(UserName="smtp-user", AccessKeyId=kid)
    s = env.smtp_starttls()
    assert auth(s, "PLAIN", kid, pw(secret, region)) == 535
    s.close()


def test_auth_before_starttls(env):
    k = env.new_key()
    s = smtplib.SMTP(env.r["smtp_host"], env.r["smtp_starttls_port"], timeout=10)
    s.ehlo()
    assert "starttls" in s.esmtp_features
    assert "auth" not in s.esmtp_features
    blob = base64.b64encode(f"\0{k['AccessKeyId']}\0x".encode()).decode()
    assert s.docmd("AUTH", "PLAIN " + blob) == (530, b"Must issue a STARTTLS command first")
    s.close()


def test_mail_requires_auth(env):
    s = env.smtp_starttls()
    code, _ = s.docmd("MAIL", "FROM:<a@example.com>")
    assert code == 530
    s.close()


def test_propagation_delay(env):
    env.admin("/smtp/config", {"propagation_delay_seconds": 1.5})
    k = env.new_key()
    p = pw(k["SecretAccessKey"], env.r["region"])
    s = env.smtp_starttls()
    assert auth(s, "PLAIN", k["AccessKeyId"], p) == 535
    assert env.admin("/smtp/logins")[-1]["reason"] == "propagation_delay"
    age = env.admin("/keys?user=smtp-user")[0]["age_seconds"]
    time.sleep(max(0.0, 1.6 - age))
    assert auth(s, "PLAIN", k["AccessKeyId"], p) == 235
    s.quit()


def test_force_454(env):
    k = env.new_key()
    p = pw(k["SecretAccessKey"], env.r["region"])
    assert env.admin("/smtp/config", {"force_454": 2})["force_454"] == 2
    s = env.smtp_starttls()
    code, msg = s.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0{k['AccessKeyId']}\0{p}".encode()).decode())
    assert (code, msg) == (454, b"4.7.0 Temporary authentication failure")
    assert auth(s, "LOGIN", k["AccessKeyId"], p) == 454
    assert auth(s, "PLAIN", k["AccessKeyId"], p) == 235
    s.quit()
    env.admin("/smtp/config", {"force_454": -1})
    for _ in range(3):
        s = env.smtp_tls()
        assert auth(s, "PLAIN", k["AccessKeyId"], p) == 454
        s.close()
    assert env.admin("/smtp/config")["force_454"] == -1


def test_refuse_connections(env):
    env.admin("/smtp/config", {"refuse_connections": True})
    with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
        smtplib.SMTP(env.r["smtp_host"], env.r["smtp_starttls_port"], timeout=5)
    env.admin("/smtp/config", {"refuse_connections": "refuse"})
    for port in (env.r["smtp_starttls_port"], env.r["smtp_tls_port"]):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
    env.admin("/smtp/config", {"refuse_connections": "hang"})
    t = time.time()
    with pytest.raises((socket.timeout, TimeoutError, smtplib.SMTPServerDisconnected), match="timed out"):
        smtplib.SMTP(env.r["smtp_host"], env.r["smtp_starttls_port"], timeout=0.5)
    assert time.time() - t < 3
    env.admin("/smtp/config", {"refuse_connections": False})
    env.smtp_starttls().quit()
    env.smtp_tls().quit()


def test_send_recorded_and_denied(env):
    k = env.new_key()
    p = pw(k["SecretAccessKey"], env.r["region"])
    s = env.smtp_starttls()
    s.login(k["AccessKeyId"], p)
    msg = b"From: a@example.com\r\nTo: success@simulator.amazonses.com\r\nSubject: hello\r\n\r\nbody\r\n"
    s.sendmail("a@example.com", ["success@simulator.amazonses.com"], msg)
    s.quit()
    m = env.admin("/smtp/messages")[-1]
    assert m["from"] == "a@example.com" and m["to"] == ["success@simulator.amazonses.com"]
    assert m["key_id"] == k["AccessKeyId"] and m["subject"] == "hello" and m["size"] > 0

    env.admin("/smtp/config", {"deny_send_from": ["blocked@example.com"]})
    s = env.smtp_tls()
    s.login(k["AccessKeyId"], p)
    with pytest.raises(smtplib.SMTPDataError) as ei:
        s.sendmail("blocked@example.com", ["success@simulator.amazonses.com"], msg)
    assert ei.value.smtp_code == 554
    text = ei.value.smtp_error.decode()
    assert text.startswith("Access denied: User `arn:aws:iam::123456789012:user/smtp-user'")
    assert "ses:SendRawEmail" in text and "identity/example.com" in text
    s.close()
    env.admin("/smtp/config", {"deny_at": "mail"})
    s = env.smtp_tls()
    s.login(k["AccessKeyId"], p)
    assert s.docmd("MAIL", "FROM:<Blocked@example.com>")[0] == 554
    s.close()
    assert len(env.admin("/smtp/messages")) == 1


def test_password_never_recorded(env):
    k = env.new_key()
    p = pw(k["SecretAccessKey"], env.r["region"])
    s = env.smtp_starttls()
    assert auth(s, "PLAIN", k["AccessKeyId"], p + "x") == 535
    assert auth(s, "LOGIN", k["AccessKeyId"], p) == 235
    s.quit()
    logged = env.log_path.read_text()
    dump = json.dumps(env.admin("/smtp/logins")) + json.dumps(env.admin("/keys")) + logged
    assert p not in dump and k["SecretAccessKey"] not in dump
    assert base64.b64encode(p.encode()).decode() not in dump


def test_accepting_since_and_login_times(env):
    env.admin("/smtp/config", {"propagation_delay_seconds": 1.5})
    k = env.new_key()
    kid, p = k["AccessKeyId"], pw(k["SecretAccessKey"], env.r["region"])
    listed = env.admin("/keys?user=smtp-user")[0]
    assert listed["accepting_since"] == pytest.approx(listed["created"] + 1.5)
    acc = env.admin(f"/smtp/accepting?key_id={kid}")
    assert acc["key_id"] == kid and acc["region"] == env.r["region"] and acc["status"] == "Active"
    assert acc["created"] == listed["created"] and acc["propagation_delay_seconds"] == 1.5
    assert acc["accepting_since"] == pytest.approx(listed["accepting_since"])
    assert acc["accepting_now"] == (acc["now"] >= acc["accepting_since"])
    s = env.smtp_starttls()
    assert auth(s, "PLAIN", kid, p) == 535
    refused = env.admin("/smtp/logins")[-1]
    assert refused["reason"] == "propagation_delay" and refused["time"] < acc["accepting_since"]
    assert refused["key_age_seconds"] < 1.5
    time.sleep(max(0.0, acc["accepting_since"] - time.time()) + 0.1)
    assert env.admin(f"/smtp/accepting?key_id={kid}")["accepting_now"] is True
    assert auth(s, "PLAIN", kid, p) == 235
    s.quit()
    accepted = env.admin("/smtp/logins")[-1]
    assert accepted["time"] >= acc["accepting_since"] and accepted["key_age_seconds"] >= 1.5
    with pytest.raises(urllib.error.HTTPError) as ei:
        env.admin("/smtp/accepting?key_id=AKIAIOSFODNN7EXAMPLE")
    assert ei.value.code == 404


def test_smtp_regions(tmp_path):
    log = tmp_path / "standin.log"
    p, r = start_standin(log, extra_args=["--smtp-regions", "us-east-1,eu-west-1"])
    try:
        assert r["region"] == "us-east-1" and set(r["smtp"]) == {"us-east-1", "eu-west-1"}
        assert r["smtp"]["us-east-1"] == {"starttls_port": r["smtp_starttls_port"], "tls_port": r["smtp_tls_port"]}
        eu = r["smtp"]["eu-west-1"]
        assert len({eu["starttls_port"], eu["tls_port"], r["smtp_starttls_port"], r["smtp_tls_port"]}) == 4
        e = Env(p, r, log)
        k = e.new_key()
        kid, secret = k["AccessKeyId"], k["SecretAccessKey"]
        # each emulator judges passwords derived for its own region, on both listeners
        for region, other in (("us-east-1", "eu-west-1"), ("eu-west-1", "us-east-1")):
            ports = r["smtp"][region]
            for s in (e.smtp_starttls(ports["starttls_port"]), e.smtp_tls(ports["tls_port"])):
                assert auth(s, "PLAIN", kid, pw(secret, other)) == 535
                assert auth(s, "LOGIN", kid, pw(secret, region)) == 235
                s.quit()
        logins = e.admin("/smtp/logins")
        assert [(x["region"], x["code"], x["reason"]) for x in logins] == (
            [("us-east-1", 535, "wrong_region"), ("us-east-1", 235, "ok")] * 2
            + [("eu-west-1", 535, "wrong_region"), ("eu-west-1", 235, "ok")] * 2)
        assert [x["region"] for x in e.admin("/smtp/logins?region=eu-west-1")] == ["eu-west-1"] * 4
        # the certificate names the region's SES host
        with socket.create_connection(("127.0.0.1", eu["tls_port"]), timeout=10) as raw:
            with e.ssl.wrap_socket(raw, server_hostname="email-smtp.eu-west-1.amazonaws.com") as tls:
                assert tls.recv(3) == b"220"
        # knobs per region
        cfg = e.admin("/smtp/config", {"region": "eu-west-1", "force_454": 1})
        assert cfg["force_454"] == 1 and e.admin("/smtp/config")["force_454"] == 0
        assert e.admin("/smtp/config?region=eu-west-1")["force_454"] == 1
        s = e.smtp_tls(eu["tls_port"])
        assert auth(s, "PLAIN", kid, pw(secret, "eu-west-1")) == 454
        assert auth(s, "PLAIN", kid, pw(secret, "eu-west-1")) == 235
        s.sendmail("a@example.com", ["success@simulator.amazonses.com"], b"Subject: eu\r\n\r\nx\r\n")
        s.quit()
        assert [m["region"] for m in e.admin("/smtp/messages")] == ["eu-west-1"]
        assert e.admin("/smtp/messages?region=us-east-1") == []
        assert e.admin("/smtp/messages?region=eu-west-1")[0]["subject"] == "eu"
        e.admin("/smtp/clear", {"region": "eu-west-1"})
        assert e.admin("/smtp/logins?region=eu-west-1") == []
        assert len(e.admin("/smtp/logins")) == 4
        for path, body in (("/smtp/config?region=ap-south-1", None), ("/smtp/logins?region=ap-south-1", None),
                           ("/smtp/clear", {"region": "ap-south-1"})):
            with pytest.raises(urllib.error.HTTPError) as ei:
                e.admin(path, body)
            assert ei.value.code == 400
    finally:
        stop_standin(p)
    assert p.returncode == 0


def test_auth_lines_never_logged_even_verbose(tmp_path):
    log = tmp_path / "standin.log"
    p, r = start_standin(log, extra_args=["--verbose"])
    try:
        e = Env(p, r, log)
        k = e.new_key()
        kid, good = k["AccessKeyId"], pw(k["SecretAccessKey"], r["region"])
        s = e.smtp_starttls()
        assert auth(s, "LOGIN", kid, good + "x") == 535
        assert auth(s, "PLAIN", kid, good) == 235
        s.quit()
        logins = e.admin("/smtp/logins")
        assert [(x["mechanism"], x["code"], x["reason"]) for x in logins] == [
            ("LOGIN", 535, "bad_password"), ("PLAIN", 235, "ok")]
        assert not any(f in x for x in logins for f in ("password", "auth_data", "line"))
    finally:
        stop_standin(p)
    logged = log.read_text()
    assert "SMTP AUTH PLAIN" in logged and "DEBUG" in logged  # the log covers the attempts, verbosely
    b64 = lambda t: base64.b64encode(t.encode()).decode()  # noqa: E731
    forms = [good, good + "x", b64(good), b64(good + "x"), b64(f"\0{kid}\0{good}"), b64(kid), k["SecretAccessKey"]]
    for form in forms:
        assert form not in logged
        assert form not in json.dumps(logins)


# ---------------------------------------------------------------------------
# moto as patched
# ---------------------------------------------------------------------------


def test_moto_behaviour(env):
    arn = env.sm.create_secret(Name="m1", SecretString='{"a": 1}')["ARN"]
    assert "RotationEnabled" not in env.sm.describe_secret(SecretId=arn)
    tok = env.admin("/pending", {"secret_id": arn})["token"]
    for kw in ({"VersionStage": "AWSPENDING"}, {"VersionId": tok}):
        with pytest.raises(ClientError) as ei:
            env.sm.get_secret_value(SecretId=arn, **kw)
        assert ei.value.response["Error"]["Code"] == "ResourceNotFoundException"
    vers = {v["VersionId"]: v for v in env.sm.list_secret_version_ids(SecretId=arn)["Versions"]}
    assert vers[tok]["VersionStages"] == ["AWSPENDING"] and vers[tok]["CreatedDate"]
    created = vers[tok]["CreatedDate"]
    time.sleep(0.05)
    env.sm.put_secret_value(SecretId=arn, ClientRequestToken=tok, SecretString='{"a": 2}', VersionStages=["AWSPENDING"])
    # idempotent with the same value, ResourceExists with another
    env.sm.put_secret_value(SecretId=arn, ClientRequestToken=tok, SecretString='{"a": 2}', VersionStages=["AWSPENDING"])
    with pytest.raises(ClientError) as ei:
        env.sm.put_secret_value(SecretId=arn, ClientRequestToken=tok, SecretString='{"a": 3}',
                                VersionStages=["AWSPENDING"])
    assert ei.value.response["Error"]["Code"] == "ResourceExistsException"
    vers = {v["VersionId"]: v for v in env.sm.list_secret_version_ids(SecretId=arn)["Versions"]}
    assert vers[tok]["CreatedDate"] == created
    cur = [v for v, x in vers.items() if "AWSCURRENT" in x["VersionStages"]][0]
    env.sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT", MoveToVersionId=tok,
                                       RemoveFromVersionId=cur)
    assert env.sm.get_secret_value(SecretId=arn)["SecretString"] == '{"a": 2}'
    # IAM: CreateDate in whole seconds, GetAccessKeyLastUsed names the user, 2-key limit
    k = env.new_key("u2")
    assert k["CreateDate"].microsecond == 0
    assert env.iam.get_access_key_last_used(AccessKeyId=k["AccessKeyId"])["UserName"] == "u2"
    env.iam.create_access_key(UserName="u2")
    with pytest.raises(ClientError) as ei:
        env.iam.create_access_key(UserName="u2")
    assert ei.value.response["Error"]["Code"] == "LimitExceeded"


def test_admin_keys_and_versions(env):
    k = env.new_key("ku")
    keys = env.admin("/keys?user=ku")
    assert [x["access_key_id"] for x in keys] == [k["AccessKeyId"]]
    assert keys[0]["status"] == "Active" and 0 <= keys[0]["age_seconds"] < 10
    assert "secret" not in json.dumps(keys).lower()
    assert env.admin("/keys?user=nobody") == []
    env.sm.create_secret(Name="kv", SecretString="{}")
    v = env.admin("/versions?secret_id=kv")
    assert len(v) == 1 and v[0]["stages"] == ["AWSCURRENT"] and v[0]["has_value"]
    r = env.admin("/secret/rotation", {"secret_id": "kv", "enabled": False})
    assert r["rotation_enabled"] is False
    assert env.sm.describe_secret(SecretId="kv")["RotationEnabled"] is False
    env.admin("/secret/rotation", {"secret_id": "kv", "enabled": True})
    d = env.sm.describe_secret(SecretId="kv")
    assert d["RotationEnabled"] is True and d["RotationLambdaARN"] == env.r["function_arn"]
    with pytest.raises(urllib.error.HTTPError) as ei:
        env.admin("/versions?secret_id=nope")
    assert ei.value.code == 404


def test_iam_list_lag_and_secrets_seen(env):
    k = env.new_key("lag")
    env.admin("/iam/config", {"list_lag_seconds": 3600})
    assert env.iam.list_access_keys(UserName="lag")["AccessKeyMetadata"] == []
    env.admin("/iam/config", {"list_lag_seconds": 0})
    ids = [m["AccessKeyId"] for m in env.iam.list_access_keys(UserName="lag")["AccessKeyMetadata"]]
    assert ids == [k["AccessKeyId"]]
    seen = {x["access_key_id"]: x["secret_access_key"] for x in env.admin("/secrets-seen")}
    assert seen[k["AccessKeyId"]] == k["SecretAccessKey"]
    with pytest.raises(urllib.error.HTTPError) as ei:
        env.admin("/iam/config", {"bogus": 1})
    assert ei.value.code == 400


# ---------------------------------------------------------------------------
# faults
# ---------------------------------------------------------------------------


def test_fault_fail_before_and_after(env):
    env.iam.create_user(UserName="fu")
    env.admin("/faults", {"service": "iam", "action": "CreateAccessKey", "mode": "fail_before", "count": 1})
    assert len(env.admin("/faults")) == 1
    with pytest.raises(ClientError) as ei:
        env.iam.create_access_key(UserName="fu")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert ei.value.response["Error"]["Code"] == "ServiceFailure"
    assert env.admin("/keys?user=fu") == []
    assert env.admin("/faults") == []

    env.admin("/faults", {"service": "iam", "action": "CreateAccessKey", "mode": "fail_after"})
    with pytest.raises(ClientError):
        env.iam.create_access_key(UserName="fu")
    assert len(env.admin("/keys?user=fu")) == 1  # the action happened, the response was lost
    env.iam.create_access_key(UserName="fu")  # the fault was used up
    assert len(env.admin("/keys?user=fu")) == 2

    env.sm.create_secret(Name="fs", SecretString="{}")
    env.admin("/faults", {"service": "secretsmanager", "action": "PutSecretValue", "mode": "fail_before", "count": 2})
    for _ in range(2):
        with pytest.raises(ClientError) as ei:
            env.sm.put_secret_value(SecretId="fs", SecretString='{"x":1}')
        assert ei.value.response["Error"]["Code"] == "InternalServiceError"
    env.sm.put_secret_value(SecretId="fs", SecretString='{"x":1}')
    env.admin("/faults", {"service": "iam", "action": "ListAccessKeys", "mode": "fail_before", "count": -1})
    env.admin("/faults", method="DELETE")
    env.iam.list_access_keys(UserName="fu")
    reqs = env.admin("/requests")
    assert any(r["action"] == "CreateAccessKey" and r.get("fault") == "fail_after" for r in reqs)
    assert any(r["action"] == "PutSecretValue" and r.get("status") == 200 for r in reqs)


def test_fault_skip_hits_the_nth_matching_request(env):
    env.iam.create_user(UserName="sk")
    env.admin("/faults", {"service": "iam", "action": "CreateAccessKey", "mode": "fail_before", "skip": 1})
    env.iam.create_access_key(UserName="sk")  # the first one passes
    with pytest.raises(ClientError):
        env.iam.create_access_key(UserName="sk")  # the second one fails
    assert len(env.admin("/keys?user=sk")) == 1
    assert env.admin("/faults") == []
    key = env.admin("/keys?user=sk")[0]["access_key_id"]
    env.iam.delete_access_key(UserName="sk", AccessKeyId=key)
    deleted = env.admin("/iam/deleted-keys")
    assert [(d["user"], d["key_id"]) for d in deleted] == [("sk", key)]


def test_fault_throttle(env):
    env.iam.create_user(UserName="tu")
    env.admin("/faults", {"service": "iam", "action": "CreateAccessKey", "mode": "throttle"})
    with pytest.raises(ClientError) as ei:
        env.iam.create_access_key(UserName="tu")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert ei.value.response["Error"]["Code"] == "Throttling"
    assert env.admin("/keys?user=tu") == []  # not performed
    assert env.admin("/iam/created-keys") == []

    env.sm.create_secret(Name="ts", SecretString='{"v": 1}')
    env.admin("/faults", {"service": "secretsmanager", "action": "PutSecretValue", "mode": "throttle",
                          "delay_seconds": 0.3})
    with pytest.raises(ClientError) as ei:
        env.sm.put_secret_value(SecretId="ts", SecretString='{"v": 2}')
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert ei.value.response["Error"]["Code"] == "ThrottlingException"
    assert env.sm.get_secret_value(SecretId="ts")["SecretString"] == '{"v": 1}'
    assert len(env.admin("/versions?secret_id=ts")) == 1
    assert env.admin("/faults") == []  # both used up
    env.sm.put_secret_value(SecretId="ts", SecretString='{"v": 2}')

    throttled = [r for r in env.admin("/requests") if r.get("fault") == "throttle"]
    assert [(r["service"], r["action"], r["status"], r["error_code"]) for r in throttled] == [
        ("iam", "CreateAccessKey", 400, "Throttling"),
        ("secretsmanager", "PutSecretValue", 400, "ThrottlingException"),
    ]
    # delay_seconds holds the throttling answer back (a lower bound: the server slept)
    assert throttled[1]["delay_seconds"] == 0.3
    assert throttled[1]["end_time"] - throttled[1]["time"] >= 0.3
    with pytest.raises(urllib.error.HTTPError) as ei2:
        env.admin("/faults", {"service": "iam", "action": "GetUser", "mode": "bogus"})
    assert ei2.value.code == 400


def test_latency_every_matching_request_without_serializing(env):
    env.iam.create_user(UserName="lu")
    rules = env.admin("/latency", {"service": "iam", "action": "GetUser", "seconds": 1.5})
    assert rules == [{"service": "iam", "action": "GetUser", "seconds": 1.5, "where": "before"}]
    # a fault on the same action still applies: latency does not use it up, nor it latency
    env.admin("/faults", {"service": "iam", "action": "GetUser", "mode": "fail_before"})
    with pytest.raises(ClientError):
        env.iam.get_user(UserName="lu")
    errors: list[Exception] = []

    def call() -> None:
        try:
            env.iam.get_user(UserName="lu")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    env.iam.list_users()
    reqs = env.admin("/requests")
    got = [r for r in reqs if r["action"] == "GetUser"]
    assert [r["status"] for r in got] == [500, 200, 200]
    assert all(r["latency_seconds"] == 1.5 for r in got)
    assert "latency_seconds" not in [r for r in reqs if r["action"] == "ListUsers"][0]
    ok = got[1:]
    # both were inside the server at once: each arrived before either was answered
    assert max(r["time"] for r in ok) < min(r["end_time"] for r in ok)

    # "after": the action is done at once, the answer comes later
    env.admin("/latency", {"service": "iam", "action": "CreateAccessKey", "seconds": 1.0, "where": "after"})
    env.iam.create_access_key(UserName="lu")
    created = env.admin("/keys?user=lu")[0]["created"]
    entry = [r for r in env.admin("/requests") if r["action"] == "CreateAccessKey"][0]
    assert entry["end_time"] - created >= 1.0
    assert env.admin("/latency", {"service": "iam", "action": "GetUser", "seconds": 0}) == [
        {"service": "iam", "action": "CreateAccessKey", "seconds": 1.0, "where": "after"}]
    env.admin("/latency", method="DELETE")
    assert env.admin("/latency") == []


def test_created_keys_counted_from_answers(env):
    env.iam.create_user(UserName="ck")
    k1 = env.iam.create_access_key(UserName="ck")["AccessKey"]
    env.admin("/faults", {"service": "iam", "action": "CreateAccessKey", "mode": "fail_after"})
    with pytest.raises(ClientError):
        env.iam.create_access_key(UserName="ck")  # made, answer lost
    env.admin("/faults", {"service": "iam", "action": "CreateAccessKey", "mode": "fail_before"})
    with pytest.raises(ClientError):
        env.iam.create_access_key(UserName="ck")  # not made
    with pytest.raises(ClientError) as ei:
        env.iam.create_access_key(UserName="ck")  # moto refuses a third key
    assert ei.value.response["Error"]["Code"] == "LimitExceeded"

    created = env.admin("/iam/created-keys")
    assert [(c["user"], c["answered"]) for c in created] == [("ck", True), ("ck", False)]
    assert created[0]["key_id"] == k1["AccessKeyId"]
    assert {c["key_id"] for c in created} == {k["access_key_id"] for k in env.admin("/keys?user=ck")}
    reqs = [r for r in env.admin("/requests") if r["action"] == "CreateAccessKey"]
    assert [(r["status"], r.get("fault"), r.get("key_id"), r.get("answered")) for r in reqs] == [
        (200, None, k1["AccessKeyId"], True),
        (500, "fail_after", created[1]["key_id"], False),
        (500, "fail_before", None, None),
        (reqs[3]["status"], None, None, None),
    ]
    assert reqs[1]["performed_status"] == 200
    assert reqs[3]["status"] >= 400 and reqs[3]["error_code"] == "LimitExceeded"
    assert all(isinstance(r["status"], int) and r["service"] and r["action"] for r in env.admin("/requests"))
    # only the key ids were taken from the answers
    seen = json.dumps(env.admin("/requests")) + json.dumps(created)
    assert "SecretAccessKey" not in seen
    assert not any(x["secret_access_key"] in seen for x in env.admin("/secrets-seen"))


# ---------------------------------------------------------------------------
# Runtime API + orchestrator
# ---------------------------------------------------------------------------


def test_rotate_ok(env, fake_lambda):
    arn = env.sm.create_secret(Name="r1", SecretString='{"iam_user": "u", "host": "h"}')["ARN"]
    old = env.sm.get_secret_value(SecretId=arn)["VersionId"]
    fl = fake_lambda(rotation_handler(env))
    r = env.admin("/rotate", {"secret_id": "r1"})
    assert r["ok"], r
    assert [s["step"] for s in r["steps"]] == ["createSecret", "setSecret", "testSecret", "finishSecret"]
    assert all(s["ok"] and s["duration_ms"] >= 0 for s in r["steps"])
    tok = r["token"]
    assert [e["Step"] for e in fl.events] == ["createSecret", "setSecret", "testSecret", "finishSecret"]
    for e in fl.events:
        assert e == {"Step": e["Step"], "SecretId": arn, "ClientRequestToken": tok, "RotationToken": r["rotation_token"]}
    h = fl.headers[0]
    assert int(h["Lambda-Runtime-Deadline-Ms"]) > time.time() * 1000 + 200_000
    assert h["Lambda-Runtime-Invoked-Function-Arn"] == env.r["function_arn"]
    assert h["Lambda-Runtime-Trace-Id"].startswith("Root=")
    stages = {v["version_id"]: v["stages"] for v in env.admin("/versions?secret_id=r1")}
    assert stages[tok] == ["AWSCURRENT"] and stages[old] == ["AWSPREVIOUS"]
    assert json.loads(env.sm.get_secret_value(SecretId=arn)["SecretString"])["n"] == 1
    d = env.sm.describe_secret(SecretId=arn)
    assert d["RotationEnabled"] is True and d["RotationLambdaARN"] == env.r["function_arn"]
    # a second rotation works too
    r2 = env.admin("/rotate", {"secret_id": arn, "token": str(uuid.uuid4())})
    assert r2["ok"] and json.loads(env.sm.get_secret_value(SecretId=arn)["SecretString"])["n"] == 2


def test_rotate_failure_stops_and_retry(env, fake_lambda):
    env.sm.create_secret(Name="r2", SecretString='{"n": 0}')
    fl = fake_lambda(rotation_handler(env, fail_step="setSecret"))
    r = env.admin("/rotate", {"secret_id": "r2"})
    assert not r["ok"]
    assert [s["step"] for s in r["steps"]] == ["createSecret", "setSecret"]
    assert r["steps"][1]["error_type"] == "RuntimeError"
    assert r["steps"][1]["error_message"] == "setSecret failed on purpose"
    tok = r["token"]
    v = {x["version_id"]: x for x in env.admin("/versions?secret_id=r2")}
    assert v[tok]["stages"] == ["AWSPENDING"] and v[tok]["has_value"]
    # another token while that rotation is pending: refused like AWS
    r_other = env.admin("/rotate", {"secret_id": "r2", "token": str(uuid.uuid4())})
    assert not r_other["ok"] and r_other["error_type"] == "InvalidRequestException"
    # retry with the same token reuses the version (createSecret finds the value)
    fl.handler = rotation_handler(env)
    r = env.admin("/rotate", {"secret_id": "r2", "token": tok})
    assert r["ok"] and r["token"] == tok
    assert json.loads(env.sm.get_secret_value(SecretId="r2")["SecretString"])["n"] == 1
    v = {x["version_id"]: x for x in env.admin("/versions?secret_id=r2")}
    assert v[tok]["stages"] == ["AWSCURRENT"]
    assert not any("AWSPENDING" in x["stages"] for x in v.values())


def test_rotate_not_immediately(env, fake_lambda):
    arn = env.sm.create_secret(Name="r3", SecretString='{"n": 0}')["ARN"]
    fl = fake_lambda(rotation_handler(env))
    r = env.admin("/rotate", {"secret_id": "r3", "rotate_immediately": False})
    assert r["ok"] and [s["step"] for s in r["steps"]] == ["testSecret"]
    assert r["steps"][0]["response"] == {"pending_empty": "ResourceNotFoundException"}
    assert [e["Step"] for e in fl.events] == ["testSecret"]
    v = env.admin("/versions?secret_id=r3")
    assert len(v) == 1 and v[0]["stages"] == ["AWSCURRENT"]
    assert env.sm.get_secret_value(SecretId=arn)["SecretString"] == '{"n": 0}'


def test_invoke_verbatim_timeout_and_step_by_step(env, fake_lambda):
    got = []
    gate = threading.Event()

    def handler(event, hdrs):
        got.append(event)
        if isinstance(event, dict) and event.get("hang"):
            gate.wait(10)
            return SILENT
        return {"echo": event}

    fake_lambda(handler)
    r = env.admin("/invoke", {"event": {"Step": "bogus", "x": [1, 2]}})
    assert r["ok"] and r["response"] == {"echo": {"Step": "bogus", "x": [1, 2]}} and r["deadline_ms"] > 0
    r = env.admin("/invoke", {"event": "not an object"})
    assert r["ok"] and r["response"] == {"echo": "not an object"}
    t = time.time()
    r = env.admin("/invoke", {"event": {"hang": True}, "deadline_seconds": 0.5})
    gate.set()
    assert not r["ok"] and r["error_type"] == "Sandbox.Timedout"
    assert time.time() - t < 6
    # step by step with /pending
    env.sm.create_secret(Name="r4", SecretString="{}")
    tok = env.admin("/pending", {"secret_id": "r4"})["token"]
    assert env.admin("/pending", {"secret_id": "r4", "token": tok}) == {"token": tok, "created": False}
    assert any(v["version_id"] == tok and v["stages"] == ["AWSPENDING"] and not v["has_value"]
               for v in env.admin("/versions?secret_id=r4"))


def test_invoke_without_runtime_times_out(env):
    r = env.admin("/invoke", {"event": {}, "deadline_seconds": 0.2})
    assert not r["ok"] and r["error_type"] == "Sandbox.Timedout" and "no runtime" in r["error_message"]


def test_init_error_fails_invocation(env):
    host, port = env.r["runtime_api"].split(":")
    res: dict[str, Any] = {}
    th = threading.Thread(target=lambda: res.update(env.admin("/invoke", {"event": {}, "deadline_seconds": 20})))
    th.start()
    time.sleep(0.3)
    c = http.client.HTTPConnection(host, int(port), timeout=5)
    c.request("POST", "/2018-06-01/runtime/init/error",
              body=json.dumps({"errorType": "Config", "errorMessage": "OLD_KEY_ACTION invalid"}))
    assert c.getresponse().status == 202
    th.join(10)
    assert res["ok"] is False and res["error_type"] == "Config" and res["error_message"] == "OLD_KEY_ACTION invalid"


def test_dead_poller_does_not_eat_invocations(env, fake_lambda):
    host, port = env.r["runtime_api"].split(":")
    dead = socket.create_connection((host, int(port)))
    dead.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    dead.close()
    time.sleep(0.8)
    fake_lambda(lambda e, h: "alive")
    r = env.admin("/invoke", {"event": {}, "deadline_seconds": 10})
    assert r["ok"] and r["response"] == "alive"


def test_simultaneous_invocations_go_to_different_runtimes(env, fake_lambda):
    both = threading.Barrier(2, timeout=20)

    def runtime(name: str) -> Callable:
        def handle(event, hdrs):
            # returns only while the other runtime holds an event too: a stand-in that
            # delivered one at a time would break the barrier and fail both invocations
            both.wait()
            return {"runtime": name, "event": event, "request_id": hdrs["Lambda-Runtime-Aws-Request-Id"]}

        return handle

    fake_lambda(runtime("a"))
    fake_lambda(runtime("b"))
    events = [{"Step": "createSecret", "n": 1}, {"Step": "createSecret", "n": 2}]
    res = env.admin("/invoke-many", {"events": events, "deadline_seconds": 30})
    assert [r["ok"] for r in res] == [True, True], res
    assert [r["response"]["event"] for r in res] == events
    assert [r["response"]["request_id"] for r in res] == [r["request_id"] for r in res]
    assert {r["response"]["runtime"] for r in res} == {"a", "b"}
    assert res[0]["delivered_to"] != res[1]["delivered_to"]
    assert max(r["delivered_at"] for r in res) < min(r["finished_at"] for r in res)

    # two /invoke admin calls at once are served at once as well
    results: list[Any] = [None, None]

    def call(i: int) -> None:
        results[i] = env.admin("/invoke", {"event": {"n": i}, "deadline_seconds": 30})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert [r["ok"] for r in results] == [True, True], results
    assert [r["response"]["event"] for r in results] == [{"n": 0}, {"n": 1}]
    assert {r["response"]["runtime"] for r in results} == {"a", "b"}


def test_invoke_many_without_runtime_and_bad_input(env):
    res = env.admin("/invoke-many", {"events": [{"n": 1}, {"n": 2}], "deadline_seconds": 0.2})
    assert [(r["ok"], r["error_type"]) for r in res] == [(False, "Sandbox.Timedout")] * 2
    assert all("no runtime" in r["error_message"] and r["delivered_at"] is None for r in res)
    for bad in ({}, {"events": []}, {"events": {"n": 1}}):
        with pytest.raises(urllib.error.HTTPError) as ei:
            env.admin("/invoke-many", bad)
        assert ei.value.code == 400


# ---------------------------------------------------------------------------
# process lifecycle
# ---------------------------------------------------------------------------


def test_second_instance_ports_and_exit_on_stdin_eof(env, tmp_path):
    log = tmp_path / "standin.log"
    p, r = start_standin(log, extra_args=["--region", "eu-west-1", "--account", "111122223333"])
    try:
        assert r["region"] == "eu-west-1" and r["account"] == "111122223333"
        mine = {r["endpoint"], r["runtime_api"], r["admin"], r["smtp_starttls_port"], r["smtp_tls_port"]}
        theirs = {env.r["endpoint"], env.r["runtime_api"], env.r["admin"], env.r["smtp_starttls_port"],
                  env.r["smtp_tls_port"]}
        assert not mine & theirs
        assert os.path.exists(r["ca_file"])
        e2 = Env(p, r, log)
        k = e2.new_key()
        assert k["AccessKeyId"]
        arn = e2.sm.create_secret(Name="x", SecretString="{}")["ARN"]
        assert ":111122223333:" in arn and ":eu-west-1:" in arn
        s = e2.smtp_tls()
        assert auth(s, "PLAIN", k["AccessKeyId"], pw(k["SecretAccessKey"], "eu-west-1")) == 235
        assert auth(s, "PLAIN", k["AccessKeyId"], pw(k["SecretAccessKey"], "us-east-1")) in (503, 535)
        s.close()
    finally:
        stop_standin(p)  # closes stdin; kills (returncode != 0) only if it did not exit
    assert p.returncode == 0
    assert not os.path.exists(r["ca_file"])


def test_exit_on_sigterm(tmp_path):
    p, r = start_standin(tmp_path / "standin.log")
    p.terminate()
    assert p.wait(5) == 0
    assert not os.path.exists(r["ca_file"])
    stop_standin(p)
