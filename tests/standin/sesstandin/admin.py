"""Admin HTTP API (JSON in, JSON out) that drives and inspects the stand-in.

Routes live in :data:`ROUTES`, a table {(method, path): handler}; a handler takes the
:class:`~sesstandin.app.Standin`, the query parameters (first value of each) and the JSON
body (POST/PUT only; {} otherwise) and returns what is sent back with HTTP 200. Errors are
``{"error_type", "error_message"}`` with the :class:`~sesstandin.common.ApiError` status
(400 invalid input, 404 unknown route or object), or 500 with the exception's type.

Running
    POST /rotate          {"secret_id", "token"?, "rotate_immediately"?=true, "deadline_seconds"?=300, "force"?=false}
                          -> {"token", "rotation_token", "ok", "steps": [{"step", "ok", "error_type"?,
                              "error_message"?, "duration_ms", "response"?}], "current_version", "versions"}
    POST /invoke          {"event": <any JSON, sent verbatim>, "deadline_seconds"?=300}
                          -> {"ok", "error_type"?, "error_message"?, "response"?, "duration_ms", "deadline_ms",
                              "request_id", "delivered_at", "delivered_to", "finished_at"}
    POST /invoke-many     {"events": [<event>, ...], "deadline_seconds"?=300} -> [<an /invoke result>, ...]
                          all queued at once, answered when all are done, in the events' order
    POST /pending         {"secret_id", "token"?} -> {"token", "created"}
    POST /secret/rotation {"secret_id", "enabled"} -> {"arn", "rotation_enabled"}
    GET  /invocations     -> the Runtime API invocations; GET /runtime/init_errors
IAM and Secrets Manager
    GET  /keys[?user=NAME][&region=R] -> [{"access_key_id", "user_name", "status", "age_seconds", "create_date",
                          "created", "accepting_since"}] (accepting_since: per region R's SMTP emulator)
    GET  /versions?secret_id=ID -> [{"version_id", "stages", "has_value", "created_date"}]
    GET  /iam/config, POST /iam/config {"list_lag_seconds": N} -> IAM knobs (ListAccessKeys
                          hides keys younger than N s: IAM eventual consistency)
    GET  /iam/created-keys -> [{"key_id", "user", "time", "answered"}] every key a CreateAccessKey made
    GET  /iam/deleted-keys -> [{"key_id", "user", "time"}] every key a DeleteAccessKey removed
    GET  /secrets-seen    -> every secret access key minted [{"access_key_id","secret_access_key"}] (test-only)
SES SMTP (region: query parameter on GET, body field on POST; default the primary region)
    GET  /smtp/config[?region=R], POST /smtp/config {"region"?, knobs...} (partial update) -> the whole config
    GET  /smtp/logins[?region=R]   -> AUTH attempts (all regions unless R is given)
    GET  /smtp/messages[?region=R] -> delivered messages (all regions unless R is given)
    POST /smtp/clear {"region"?}   -> forget logins and messages (all regions unless given)
    GET  /smtp/accepting?key_id=K[&region=R] -> {"key_id", "region", "status", "created",
                          "propagation_delay_seconds", "accepting_since", "accepting_now", "now"}
Faults and latency on the AWS endpoint
    GET  /faults, POST /faults {"service", "action", "mode", "count"?=1, ...}, DELETE /faults
    GET  /latency, POST /latency {"service"?="*", "action"?="*", "seconds", "where"?="before"}, DELETE /latency
    GET  /requests        -> the AWS requests seen by moto (see FaultMiddleware.list_requests)
Role policy of the function (sesstandin/policy.py): requests signed with lambda_env's
credentials are authorized against these policies; everyone else's are not
    POST /policy          {"label", "variant", "template"?="template.yaml", "parameters"?, "physical"?,
                          "imports"?, "statements"?} -> {"label", "variant", "statements", "environment"}:
                          renders the template's RotatorRole policy for one deployed stack (or takes the
                          given statements, e.g. README's doctor policy) and adds it (a request is
                          allowed when one stack's policy allows it); or {"missing_key_answer":
                          "AccessDenied"|"NoSuchEntity"} (GetAccessKeyLastUsed of a key that does not
                          exist: AWS's answer, the default, or moto's)
    GET  /policy          -> {"principal", "missing_key_answer", "policies", "decisions", "denials"}
Process
    POST /reset           -> moto reset + knobs, faults, latency and records cleared
    GET  /health          -> {"ok": true}
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs, urlparse

from .common import ApiError, QuietHandler, need
from .moto_patches import DEFAULT_IAM_CONFIG, IAM_CONFIG, SECRETS_SEEN

if TYPE_CHECKING:
    from .app import Standin

log = logging.getLogger("standin.admin")

Query = dict[str, str]
Body = dict[str, Any]
Handler = Callable[["Standin", Query, Body], Any]


# -- running ------------------------------------------------------------------------------
def health(st: Standin, q: Query, body: Body) -> Any:
    return {"ok": True}


def rotate(st: Standin, q: Query, body: Body) -> Any:
    return st.orchestrator.rotate(
        need(body, "secret_id"), body.get("token"),
        rotate_immediately=bool(body.get("rotate_immediately", True)),
        deadline_seconds=float(body.get("deadline_seconds", 300)),
        force=bool(body.get("force", False)))


def invoke(st: Standin, q: Query, body: Body) -> Any:
    if "event" not in body:
        raise ApiError(400, "ValidationError", "missing 'event'")
    _, res = st.runtime.invoke(body["event"], float(body.get("deadline_seconds", 300)))
    return res


def invoke_many(st: Standin, q: Query, body: Body) -> Any:
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise ApiError(400, "ValidationError", "'events' must be a non-empty list")
    return st.runtime.invoke_many(events, float(body.get("deadline_seconds", 300)))


def pending(st: Standin, q: Query, body: Body) -> Any:
    _, token, created = st.orchestrator.create_pending(need(body, "secret_id"), body.get("token"))
    return {"token": token, "created": created}


def secret_rotation(st: Standin, q: Query, body: Body) -> Any:
    return st.orchestrator.set_rotation(need(body, "secret_id"), bool(body.get("enabled", True)))


def invocations(st: Standin, q: Query, body: Body) -> Any:
    return [inv.summary() for inv in list(st.runtime.history)]


def init_errors(st: Standin, q: Query, body: Body) -> Any:
    return list(st.runtime.init_errors)


# -- IAM and Secrets Manager --------------------------------------------------------------
def keys(st: Standin, q: Query, body: Body) -> Any:
    delay = st.smtp_for(q.get("region")).propagation_delay()
    out = st.moto.keys(q.get("user"))
    for k in out:
        k["accepting_since"] = k["created"] + delay
    return out


def versions(st: Standin, q: Query, body: Body) -> Any:
    return st.orchestrator.versions(need(q, "secret_id"))


def iam_config(st: Standin, q: Query, body: Body) -> Any:
    return dict(IAM_CONFIG)


def set_iam_config(st: Standin, q: Query, body: Body) -> Any:
    unknown = set(body) - set(DEFAULT_IAM_CONFIG)
    if unknown:
        raise ApiError(400, "ValidationError", f"unknown knobs: {sorted(unknown)}")
    IAM_CONFIG.update({k: float(v) for k, v in body.items()})
    return dict(IAM_CONFIG)


def created_keys(st: Standin, q: Query, body: Body) -> Any:
    return st.faults.list_created_keys()


def deleted_keys(st: Standin, q: Query, body: Body) -> Any:
    return st.faults.list_deleted_keys()


def secrets_seen(st: Standin, q: Query, body: Body) -> Any:
    return list(SECRETS_SEEN)


# -- SES SMTP -----------------------------------------------------------------------------
def smtp_config(st: Standin, q: Query, body: Body) -> Any:
    return st.smtp_for(q.get("region")).get_config()


def set_smtp_config(st: Standin, q: Query, body: Body) -> Any:
    knobs = dict(body)
    smtp = st.smtp_for(knobs.pop("region", None))
    return smtp.set_config(knobs)


def _emulators(st: Standin, region: str | None) -> list[Any]:
    return [st.smtp_for(region)] if region else list(st.smtps.values())


def smtp_logins(st: Standin, q: Query, body: Body) -> Any:
    out = [x for s in _emulators(st, q.get("region")) for x in s.list_logins()]
    return sorted(out, key=lambda x: x["time"])


def smtp_messages(st: Standin, q: Query, body: Body) -> Any:
    out = [x for s in _emulators(st, q.get("region")) for x in s.list_messages()]
    return sorted(out, key=lambda x: x["time"])


def smtp_clear(st: Standin, q: Query, body: Body) -> Any:
    for s in _emulators(st, body.get("region")):
        s.clear()
    return {"ok": True}


def smtp_accepting(st: Standin, q: Query, body: Body) -> Any:
    return st.smtp_for(q.get("region")).accepting(need(q, "key_id"))


# -- faults and latency -------------------------------------------------------------------
def faults(st: Standin, q: Query, body: Body) -> Any:
    return st.faults.list()


def add_fault(st: Standin, q: Query, body: Body) -> Any:
    return st.faults.add(body)


def clear_faults(st: Standin, q: Query, body: Body) -> Any:
    st.faults.clear()
    return {"ok": True}


def latency(st: Standin, q: Query, body: Body) -> Any:
    return st.faults.list_latency()


def set_latency(st: Standin, q: Query, body: Body) -> Any:
    return st.faults.set_latency(body)


def clear_latency(st: Standin, q: Query, body: Body) -> Any:
    st.faults.clear_latency()
    return {"ok": True}


def requests(st: Standin, q: Query, body: Body) -> Any:
    return st.faults.list_requests()


# -- process ------------------------------------------------------------------------------
def policy(st: Standin, q: Query, body: Body) -> Any:
    return st.authorizer.state()


def set_policy(st: Standin, q: Query, body: Body) -> Any:
    from .policy import MISSING_KEY_ANSWERS

    a = st.authorizer
    if "missing_key_answer" in body:
        if body["missing_key_answer"] not in MISSING_KEY_ANSWERS:
            raise ApiError(400, "ValidationError", f"missing_key_answer must be one of {MISSING_KEY_ANSWERS}")
        a.missing_key_answer = body["missing_key_answer"]
    if "label" not in body:
        return a.state()
    statements = body.get("statements")
    if statements is not None and not isinstance(statements, list):
        raise ApiError(400, "ValidationError", "'statements' must be a list of policy statements")
    return a.add(need(body, "label"), need(body, "variant"), body.get("template", "template.yaml"),
                 {k: str(v) for k, v in (body.get("parameters") or {}).items()},
                 dict(body.get("physical") or {}), dict(body.get("imports") or {}), statements)


def reset(st: Standin, q: Query, body: Body) -> Any:
    st.reset()
    return {"ok": True}


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/health"): health,
    ("POST", "/rotate"): rotate,
    ("POST", "/invoke"): invoke,
    ("POST", "/invoke-many"): invoke_many,
    ("POST", "/pending"): pending,
    ("POST", "/secret/rotation"): secret_rotation,
    ("GET", "/invocations"): invocations,
    ("GET", "/runtime/init_errors"): init_errors,
    ("GET", "/keys"): keys,
    ("GET", "/versions"): versions,
    ("GET", "/iam/config"): iam_config,
    ("POST", "/iam/config"): set_iam_config,
    ("GET", "/iam/created-keys"): created_keys,
    ("GET", "/iam/deleted-keys"): deleted_keys,
    ("GET", "/secrets-seen"): secrets_seen,
    ("GET", "/smtp/config"): smtp_config,
    ("POST", "/smtp/config"): set_smtp_config,
    ("GET", "/smtp/logins"): smtp_logins,
    ("GET", "/smtp/messages"): smtp_messages,
    ("POST", "/smtp/clear"): smtp_clear,
    ("GET", "/smtp/accepting"): smtp_accepting,
    ("GET", "/faults"): faults,
    ("POST", "/faults"): add_fault,
    ("DELETE", "/faults"): clear_faults,
    ("GET", "/latency"): latency,
    ("POST", "/latency"): set_latency,
    ("DELETE", "/latency"): clear_latency,
    ("GET", "/requests"): requests,
    ("POST", "/reset"): reset,
    ("GET", "/policy"): policy,
    ("POST", "/policy"): set_policy,
}


class AdminHandler(QuietHandler):
    """Serves :data:`ROUTES`; ``standin`` is bound on a subclass made at start."""

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
        try:
            body = self._body() if method in ("POST", "PUT") else {}
            handler = ROUTES.get((method, path))
            if handler is None:
                raise ApiError(404, "NotFound", f"{method} {path}")
            self.send_json(200, handler(self.standin, q, body))
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
