"""Helpers every part of the stand-in shares: names, clocks, sockets, the SES SMTP password
derivation (the emulator's judge and the tests' oracle), the admin API's error type and the
quiet JSON-speaking HTTP handler that the Runtime API and the admin API are built on."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

log = logging.getLogger("standin")

FUNCTION_NAME = "ses-smtp-rotator"
STEPS = ["createSecret", "setSecret", "testSecret", "finishSecret"]


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


class ApiError(Exception):
    """An admin API refusal: HTTP status, stable error type, message."""

    def __init__(self, status: int, error_type: str, message: str):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def need(d: dict[str, Any], key: str) -> Any:
    """``d[key]``, or a 400 ValidationError naming the missing field."""
    if key not in d or d[key] in (None, ""):
        raise ApiError(400, "ValidationError", f"missing '{key}'")
    return d[key]


def parse_json(body: bytes) -> Any:
    """JSON when it parses, else the text (a runtime may post anything)."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 handler that logs at DEBUG only and speaks JSON."""

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
