"""The WSGI middleware in front of moto: it names each AWS request (service and action),
injects the faults and latency the tests configure, holds requests for the schedule
explorer's scheduler (:mod:`.schedule`), and keeps the request log with each request's answer.

Faults (``POST /faults``) are consumed one matching request at a time; latency rules
(``POST /latency``) apply to every matching request until removed, and combine with faults.
The server under this middleware is werkzeug's threaded server, so a request that sleeps
does not hold up any other request.
"""

from __future__ import annotations

import collections
import io
import json
import logging
import re
import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

from .common import ApiError

log = logging.getLogger("standin.faults")

MODES = ("fail_before", "fail_after", "throttle", "delay")
ANY = "*"


def service_of(environ: dict[str, Any]) -> str:
    """``iam``, ``secretsmanager`` or "" from the JSON target or the SigV4 credential scope."""
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


def request_body(environ: dict[str, Any]) -> bytes:
    """The request's body, read once and put back for moto (``standin.body`` keeps it)."""
    body = environ.get("standin.body")
    if body is None:
        length = environ.get("CONTENT_LENGTH")
        try:
            if length:
                body = environ["wsgi.input"].read(int(length))
            elif environ.get("wsgi.input_terminated"):
                body = environ["wsgi.input"].read()
            else:
                body = b""
        except Exception:  # pragma: no cover
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["standin.body"] = body
    return body


def form_of(environ: dict[str, Any]) -> dict[str, list[str]]:
    """The query string and, for a form-encoded body (IAM's query protocol), its fields."""
    params = parse_qs(environ.get("QUERY_STRING", ""))
    if "form" in environ.get("CONTENT_TYPE", "") or not environ.get("CONTENT_TYPE"):
        try:
            params.update(parse_qs(request_body(environ).decode("utf-8")))
        except UnicodeDecodeError:
            pass
    return params


def action_of(environ: dict[str, Any]) -> str:
    """The action from ``X-Amz-Target`` (JSON protocol) or the ``Action`` form field (IAM's
    query protocol)."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target and "." in target:
        return target.split(".", 1)[1]
    return (form_of(environ).get("Action") or [""])[0]


def error_code_of(body: bytes) -> str | None:
    """The error code of an AWS error answer (JSON ``__type`` or XML ``<Code>``)."""
    try:
        obj = json.loads(body)
        if isinstance(obj, dict) and obj.get("__type"):
            return str(obj["__type"]).rsplit("#", 1)[-1]
    except ValueError:
        pass
    m = re.search(rb"<Code>([^<]*)</Code>", body)
    return m.group(1).decode("utf-8", "replace") if m else None


def created_key_of(body: bytes) -> tuple[str | None, str | None]:
    """(AccessKeyId, UserName) of a CreateAccessKey answer. Only these two elements are read:
    the body also holds the secret access key, which is never kept."""
    kid = re.search(rb"<AccessKeyId>([^<]*)</AccessKeyId>", body)
    user = re.search(rb"<UserName>([^<]*)</UserName>", body)
    return (kid.group(1).decode() if kid else None, user.group(1).decode() if user else None)


def _matches(rule: dict[str, Any], service: str, action: str) -> bool:
    return rule["service"] in (ANY, service) and rule["action"] in (ANY, action)


class FaultMiddleware:
    """WSGI middleware: identifies the AWS action, injects faults and latency, logs requests.

    A fault is {"service", "action", "mode", "count", ...} ("*" matches any service/action):
      mode fail_before -> HTTP 500 without performing the action
      mode fail_after  -> the action is performed, its response is replaced by a 500
                          (a lost response)
      mode throttle    -> AWS's throttling answer without performing the action: IAM
                          HTTP 400 ``<Code>Throttling</Code>``, Secrets Manager HTTP 400
                          ``{"__type": "ThrottlingException"}``
      mode delay       -> sleep ``delay_seconds`` (default 1) then perform normally
    ``count`` = number of matching requests to affect (-1 = forever); the first fault in the
    list that matches is used. Optional "status", "code", "message" override the error;
    "delay_seconds" on a fail/throttle mode delays the error answer by that much (for
    fail_after: after the action was performed).

    A latency rule is {"service", "action", "seconds", "where"}: every matching request
    sleeps ``seconds`` before the action ("before", default) or after it, before the answer
    ("after"). Rules do not use up faults and faults do not use up rules. (A ``delay`` fault
    with count -1 also slows every matching request, but as the first match it stands in
    front of any later fault for the same action: use a latency rule for lasting latency.)

    Every request is logged (see :meth:`list_requests`); CreateAccessKey answers add the key
    id to :attr:`created_keys`.

    With a :attr:`scheduler` (:mod:`.schedule`, set by the schedule explorer), an authorized
    request of a watched invocation waits for the scheduler's verdict first: ``deliver`` (then
    the faults above apply as usual), ``fail_before``/``crash_before`` (a 500, moto never acts),
    ``lost`` (moto acts, a 500 goes back) or ``crash_after`` (moto acts, then the answer waits
    until the driver killed the client). The log entry then carries ``held``, ``slot`` and
    ``verdict``.
    """

    def __init__(self, app):  # type: ignore[no-untyped-def]
        self.app = app
        self.lock = threading.Lock()
        self.faults: list[dict[str, Any]] = []
        self.latency: list[dict[str, Any]] = []
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=10000)
        self.created_keys: list[dict[str, Any]] = []
        self.deleted_keys: list[dict[str, Any]] = []
        # The role policy of the function (policy.Authorizer), set by the Standin: every
        # request the function signs is authorized before faults and moto see it.
        self.authorizer: Any = None
        # The schedule explorer's scheduler (schedule.Scheduler), when one drives this
        # stand-in: it holds the authorized requests of the invocations it watches until its
        # driver releases them, with a verdict (deliver, fail before, lost response, crash).
        self.scheduler: Any = None

    # -- configuration -------------------------------------------------------------------
    def add(self, fault: dict[str, Any]) -> dict[str, Any]:
        f = {
            "service": fault.get("service", ANY),
            "action": fault.get("action", ANY),
            "mode": fault.get("mode", "fail_before"),
            "count": int(fault.get("count", 1)),
            # Let this many matching requests through before the fault applies (to hit the
            # n-th call of an action within a rotation).
            "skip": int(fault.get("skip", 0)),
            "hits": 0,
        }
        for opt in ("status", "code", "message", "delay_seconds"):
            if opt in fault:
                f[opt] = fault[opt]
        if f["mode"] not in MODES:
            raise ApiError(400, "ValidationError", "mode must be one of " + ", ".join(MODES))
        if "delay_seconds" in f:
            try:
                f["delay_seconds"] = float(f["delay_seconds"])
            except (TypeError, ValueError) as e:
                raise ApiError(400, "ValidationError", "delay_seconds must be a number") from e
            if f["delay_seconds"] < 0:
                raise ApiError(400, "ValidationError", "delay_seconds must be >= 0")
        with self.lock:
            self.faults.append(f)
        return f

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()

    def list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(f) for f in self.faults]

    def set_latency(self, rule: dict[str, Any]) -> list[dict[str, Any]]:
        """Adds or replaces the rule for (service, action, where); 0 seconds removes it."""
        try:
            seconds = float(rule.get("seconds"))  # type: ignore[arg-type]
        except (TypeError, ValueError) as e:
            raise ApiError(400, "ValidationError", "seconds must be a number") from e
        if seconds < 0:
            raise ApiError(400, "ValidationError", "seconds must be >= 0")
        where = rule.get("where", "before")
        if where not in ("before", "after"):
            raise ApiError(400, "ValidationError", "where must be before or after")
        r = {"service": rule.get("service", ANY), "action": rule.get("action", ANY),
             "seconds": seconds, "where": where}
        key = (r["service"], r["action"], r["where"])
        with self.lock:
            self.latency = [x for x in self.latency if (x["service"], x["action"], x["where"]) != key]
            if seconds > 0:
                self.latency.append(r)
            return [dict(x) for x in self.latency]

    def list_latency(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(x) for x in self.latency]

    def clear_latency(self) -> None:
        with self.lock:
            self.latency.clear()

    def clear_records(self) -> None:
        with self.lock:
            self.requests.clear()
            self.created_keys.clear()
            self.deleted_keys.clear()

    def list_requests(self) -> list[dict[str, Any]]:
        """Every request so far (the last 10,000): ``time`` (arrival), ``end_time`` (answer
        sent), ``service``, ``action``, ``status`` (of the answer sent) and, when they apply,
        ``error_code``, ``fault``, ``performed_status`` (fail_after: what the action answered),
        ``latency_seconds``, ``delay_seconds``, and for CreateAccessKey ``key_id``, ``user``,
        ``answered``."""
        with self.lock:
            return [dict(e) for e in self.requests]

    def list_created_keys(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(k) for k in self.created_keys]

    # -- request handling ---------------------------------------------------------------
    def _note(self, entry: dict[str, Any], **fields: Any) -> None:
        with self.lock:
            entry.update(fields)

    def _take(self, service: str, action: str) -> dict[str, Any] | None:
        with self.lock:
            for f in self.faults:
                if not _matches(f, service, action) or f["count"] == 0:
                    continue
                if f["skip"] > 0:
                    f["skip"] -= 1
                    continue
                if f["count"] > 0:
                    f["count"] -= 1
                f["hits"] += 1
                snapshot = dict(f)
                self.faults = [x for x in self.faults if x["count"] != 0]
                return snapshot
        return None

    def _latency_for(self, service: str, action: str) -> tuple[float, float]:
        with self.lock:
            rules = [r for r in self.latency if _matches(r, service, action)]
        return (sum(r["seconds"] for r in rules if r["where"] == "before"),
                sum(r["seconds"] for r in rules if r["where"] == "after"))

    @staticmethod
    def _error(service: str, action: str, f: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        throttle = f["mode"] == "throttle"
        status = int(f.get("status", 400 if throttle else 500))
        rid = str(uuid.uuid4())
        default_msg = "Rate exceeded" if throttle else f"Injected fault on {action} (standin)"
        msg = f.get("message", default_msg)
        if service == "iam":
            code = f.get("code", "Throttling" if throttle else "ServiceFailure")
            kind = "Sender" if status < 500 else "Receiver"
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code>"
                f"<Message>{msg}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>"
            ).encode()
            ctype = "text/xml"
        else:
            code = f.get("code", "ThrottlingException" if throttle else "InternalServiceError")
            body = json.dumps({"__type": code, "message": msg}).encode()
            ctype = "application/x-amz-json-1.1"
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body))),
                   ("x-amzn-RequestId", rid), ("x-amzn-ErrorType", code)]
        return f"{status} Injected", headers, body

    def _perform(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        """Runs moto and buffers its whole answer (moto's answers are small)."""
        captured: dict[str, Any] = {}
        chunks: list[bytes] = []

        def start(status, headers, exc_info=None):  # type: ignore[no-untyped-def]
            captured["status"], captured["headers"] = status, headers
            return chunks.append

        result = self.app(environ, start)
        try:
            for chunk in result:
                chunks.append(chunk)
        finally:
            if hasattr(result, "close"):
                result.close()
        return captured["status"], list(captured["headers"]), b"".join(chunks)

    def list_deleted_keys(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(k) for k in self.deleted_keys]

    def _record_created_key(self, entry: dict[str, Any], body: bytes, answered: bool) -> None:
        key_id, user = created_key_of(body)
        if key_id is None:
            return
        with self.lock:
            entry.update(key_id=key_id, user=user, answered=answered)
            self.created_keys.append({"key_id": key_id, "user": user, "time": entry["time"],
                                      "answered": answered})

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        service = service_of(environ)
        action = action_of(environ)
        entry: dict[str, Any] = {"time": time.time(), "service": service, "action": action}
        with self.lock:
            self.requests.append(entry)
        before, after = self._latency_for(service, action) if action else (0.0, 0.0)
        if before or after:
            self._note(entry, latency_seconds=before + after)
        if before:
            time.sleep(before)
        if self.authorizer is not None and self.authorizer.is_function(environ):
            refused = self.authorizer.authorize(service, action, environ)
            if refused is not None:
                status, headers, body = refused
                code = int(status.split()[0])
                self._note(entry, status=code, end_time=time.time(), error_code=error_code_of(body),
                           authorization="denied")
                start_response(status, headers)
                return [body]
        held = self.scheduler.gate(environ, service, action) if self.scheduler is not None and action else None
        verdict = held.verdict if held is not None else None
        if held is not None:
            self._note(entry, held=held.seq, slot=held.slot, verdict=verdict)
        if verdict in ("fail_before", "crash_before"):
            fault: dict[str, Any] | None = {"mode": "fail_before"}
        elif verdict == "lost":
            fault = {"mode": "fail_after"}
        elif verdict == "crash_after":
            fault = None
        else:
            fault = self._take(service, action) if action else None
        delay = 0.0
        if fault is not None:
            log.info("fault %s on %s:%s", fault["mode"], service, action)
            delay = float(fault.get("delay_seconds", 1 if fault["mode"] == "delay" else 0))
            self._note(entry, fault=fault["mode"], **({"delay_seconds": delay} if delay else {}))
            if fault["mode"] == "delay":
                time.sleep(delay)
                fault = None
        is_create_key = service == "iam" and action == "CreateAccessKey"
        if fault is not None and fault["mode"] in ("fail_before", "throttle"):
            if delay:
                time.sleep(delay)
            status, headers, body = self._error(service, action, fault)
        else:
            status, headers, body = self._perform(environ)
            performed_ok = status.startswith("2")
            if held is not None:
                # The scheduler learns that moto acted (crash_after: waits for the kill).
                held.performed(int(status.split()[0]))
            if fault is not None:  # fail_after: the action happened, its answer is lost
                self._note(entry, performed_status=int(status.split()[0]))
                if is_create_key and performed_ok:
                    self._record_created_key(entry, body, answered=False)
                if delay:
                    time.sleep(delay)
                status, headers, body = self._error(service, action, fault)
            elif is_create_key and performed_ok:
                self._record_created_key(entry, body, answered=True)
            if service == "iam" and action == "DeleteAccessKey" and performed_ok:
                # Which key of which user went: with CreateAccessKey's answers this replays how
                # many keys a user held at any instant (GET /iam/deleted-keys).
                form = form_of(environ)
                with self.lock:
                    self.deleted_keys.append({"key_id": (form.get("AccessKeyId") or [""])[0],
                                              "user": (form.get("UserName") or [""])[0],
                                              "time": entry["time"]})
        if after:
            time.sleep(after)
        code = int(status.split()[0])
        fields: dict[str, Any] = {"status": code, "end_time": time.time()}
        if code >= 400:
            fields["error_code"] = error_code_of(body)
        self._note(entry, **fields)
        if held is not None:
            held.finish(code, fields.get("error_code"))
        start_response(status, headers)
        return [body]
