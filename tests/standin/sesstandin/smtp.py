"""SES SMTP emulator (aiosmtpd), one per SES region served.

Each :class:`SesSmtp` has a STARTTLS listener and an implicit-TLS listener with a
certificate from the CA made at start, on one asyncio loop in its own thread. AUTH
PLAIN/LOGIN is accepted only with an IAM access key id that exists in moto, is Active, is
older than ``propagation_delay_seconds``, and the SES SigV4 SMTP password for the
emulator's OWN region. Knobs (per region): ``propagation_delay_seconds``, ``force_454``,
``refuse_connections``, ``deny_send_from``, ``deny_at``, ``record_last_use`` (default true:
an accepted login is recorded as the key's IAM last use, service ``ses``, the emulator's
region, as GetAccessKeyLastUsed then reports it).

Every AUTH attempt is recorded (time, region, key id, mechanism, port, TLS mode, code,
reason, the key's age) and every delivered message (envelope, subject, size, key id); the
password and the AUTH lines themselves are never recorded or logged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
import uuid
from typing import Any

from .common import ApiError, listening_socket, ses_smtp_password_v4
from .moto_patches import Moto, key_created

log = logging.getLogger("standin.smtp")


DEFAULT_SMTP_CONFIG: dict[str, Any] = {
    "propagation_delay_seconds": 0.0,
    "force_454": 0,
    "refuse_connections": False,  # False | True/"close" | "refuse" | "hang"
    "deny_send_from": [],
    "deny_at": "data",  # "data" (like SES, after the message) | "mail"
    "record_last_use": True,
}


def set_last_used(key: Any, region: str) -> None:
    """What IAM's GetAccessKeyLastUsed reports for ``key`` from now on."""
    from moto.core.utils import utcnow
    from moto.iam.models import AccessKeyLastUsed

    key.last_used = AccessKeyLastUsed(timestamp=utcnow(), service="ses", region=region)


class SesSmtp:
    """SES SMTP emulator for one region: two listeners sharing one asyncio loop in a thread."""

    def __init__(self, moto: Moto, region: str, account: str, cert_file: str, key_file: str,
                 regions_served: list[str] | None = None):
        import ssl

        self.moto = moto
        self.region = region
        # Every region the stand-in serves: a password derived for another of them is
        # refused with reason "wrong_region" (not "bad_password").
        self.regions_served = list(regions_served or [region])
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

    def propagation_delay(self) -> float:
        with self.lock:
            return float(self.config.get("propagation_delay_seconds") or 0)

    def accepting(self, key_id: str) -> dict[str, Any]:
        """When this emulator begins (began) accepting a key: its creation time plus the
        current ``propagation_delay_seconds``. Status and password are not judged here."""
        key = self.moto.access_key(key_id)
        if key is None:
            raise ApiError(404, "NotFound", f"no access key {key_id!r}")
        created = key_created(key)
        delay = self.propagation_delay()
        now = time.time()
        return {"key_id": key_id, "region": self.region, "status": key.status,
                "created": created, "propagation_delay_seconds": delay,
                "accepting_since": created + delay, "accepting_now": now >= created + delay,
                "now": now}

    def list_logins(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(x) for x in self.logins]

    def list_messages(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(x) for x in self.messages]

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
        rec: dict[str, Any] = {
            "time": time.time(),
            "region": self.region,
            "username": username,
            "mechanism": mechanism,
            "port": server.standin_port,
            "tls_mode": server.standin_mode,
        }
        code, reason, user_name = self._check(username, password)
        rec["code"] = code
        rec["reason"] = reason
        key = self.moto.access_key(username)
        if key is not None:
            rec["key_age_seconds"] = round(rec["time"] - key_created(key), 3)
        with self.lock:
            self.logins.append(rec)
        log.info("SMTP AUTH %s region=%s user=%s port=%s -> %s (%s)", mechanism, self.region, username,
                 server.standin_port, code, reason)
        if code == 235:
            if key is not None and self.config.get("record_last_use", True):
                # IAM's GetAccessKeyLastUsed, as a sender's login would show there (AWS does not
                # document whether SES SMTP logins are recorded: the knob turns it off).
                set_last_used(key, self.region)
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
            for other in self.regions_served:
                if other != self.region and hmac.compare_digest(
                        ses_smtp_password_v4(key.secret_access_key, other).encode(), password.encode()):
                    return 535, "wrong_region", key.user_name
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
            "region": self.region,
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

        threading.Thread(target=run, name=f"smtp-{self.region}", daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("SMTP listeners did not start")
