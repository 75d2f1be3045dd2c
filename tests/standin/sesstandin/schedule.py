"""The scheduler the schedule explorer (tests/standin/explore.py) drives: it holds every AWS
request of the invocations it watches in the fault middleware (:mod:`.faults`) until the
driver releases it, with a verdict saying what happens to it.

Which invocation a request belongs to: each watched Lambda process runs with its own
``AWS_SDK_UA_APP_ID`` (``explore-s0``, ``explore-s1``, ...), which the AWS SDK for Rust sends
as ``app/<id>`` in its User-Agent; each such process polls a Runtime API of its own, so it
runs exactly the invocations the driver queues there, one at a time. A request whose app id
is not watched (the driver's own set-up, read-back and operator edits; every request while
holds are off) passes straight through.

Verdicts (:data:`VERDICTS`):
  ``deliver``       the request goes to moto and its answer to the client;
  ``fail_before``   an HTTP 500 without moto acting (the SDK retries, except where retries are off);
  ``lost``          moto acts, the client gets an HTTP 500 instead of the answer (a lost response);
  ``crash_before``  the driver SIGKILLed the process first; moto never acts;
  ``crash_after``   moto acts, then (:meth:`Held.performed`) the middleware waits until the driver
                    has SIGKILLed the process, then answers a dead socket.
The middleware reports when it is done with a request (:meth:`Held.finish`), so the driver can
read state after each released request knowing the request's effect (if any) is in moto.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any, Callable

from .faults import form_of, request_body

VERDICTS = ("deliver", "fail_before", "lost", "crash_before", "crash_after")
APP_PREFIX = "explore-"
_APP_RE = re.compile(r"\bapp/(\S+)")

# How long a held request waits for the driver before it is let through on its own (a driver
# that died must not leave the server's threads hanging forever).
ORPHAN_SECONDS = 300.0


def app_id_of(environ: dict[str, Any]) -> str | None:
    """The SDK app id (``app/<id>`` in the User-Agent) of a request, or None."""
    for header in ("HTTP_X_AMZ_USER_AGENT", "HTTP_USER_AGENT"):
        m = _APP_RE.search(environ.get(header, ""))
        if m:
            return m.group(1)
    return None


def params_of(environ: dict[str, Any], service: str) -> dict[str, Any]:
    """The request parameters the explorer's records and invariants look at (no values: a
    PutSecretValue's SecretString is never kept)."""
    out: dict[str, Any] = {}
    if service == "iam":
        form = form_of(environ)
        for k in ("UserName", "AccessKeyId", "Status"):
            if form.get(k):
                out[k] = form[k][0]
        tag_keys = sorted(v[0] for k, v in form.items()
                          if re.fullmatch(r"(Tags\.member\.\d+\.Key|TagKeys\.member\.\d+)", k))
        if tag_keys:
            out["TagKeys"] = tag_keys
    elif service == "secretsmanager":
        try:
            body = json.loads(request_body(environ) or b"{}")
        except ValueError:
            body = {}
        if isinstance(body, dict):
            for k in ("VersionId", "VersionStage", "MoveToVersionId", "RemoveFromVersionId",
                      "ClientRequestToken", "VersionStages"):
                if body.get(k) is not None:
                    out[k] = body[k]
    return out


class Held:
    """One held request: who sent it, what it asks, and the driver's verdict on it."""

    def __init__(self, seq: int, slot: str, service: str, action: str, params: dict[str, Any]):
        self.seq = seq
        self.slot = slot
        self.service = service
        self.action = action
        self.params = params
        self.arrived = time.time()
        self.verdict: str | None = None
        self.status: int | None = None
        self.error_code: str | None = None
        self.moto_status: int | None = None  # what moto answered when it acted
        self._decided = threading.Event()
        self._performed = threading.Event()
        self._resume = threading.Event()
        self._finished = threading.Event()

    def __repr__(self) -> str:
        return f"Held(#{self.seq} {self.slot} {self.action} {self.params} {self.verdict})"

    # -- the middleware's side ------------------------------------------------------------
    def wait_verdict(self) -> str:
        if not self._decided.wait(ORPHAN_SECONDS):
            self.verdict = "deliver"
        return self.verdict or "deliver"

    def performed(self, moto_status: int) -> None:
        """moto acted (``crash_after``: waits until the driver killed the client)."""
        self.moto_status = moto_status
        self._performed.set()
        if self.verdict == "crash_after":
            self._resume.wait(ORPHAN_SECONDS)

    def finish(self, status: int, error_code: str | None) -> None:
        self.status, self.error_code = status, error_code
        self._performed.set()
        self._finished.set()

    # -- the driver's side ----------------------------------------------------------------
    def decide(self, verdict: str) -> None:
        assert verdict in VERDICTS, verdict
        self.verdict = verdict
        self._decided.set()

    def wait_performed(self, timeout: float) -> bool:
        return self._performed.wait(timeout)

    def resume(self) -> None:
        self._resume.set()

    def wait_finished(self, timeout: float) -> bool:
        return self._finished.wait(timeout)

    @property
    def acted(self) -> bool:
        """Whether moto performed the request (its effect, if any, is in moto)."""
        return self.moto_status is not None


class Scheduler:
    """Holds the requests of watched slots until the driver decides on them.

    ``watch(slot)`` / ``unwatch(slot)`` choose the slots (app ids without :data:`APP_PREFIX`);
    :meth:`gate` is called by the middleware for every request; the driver reads
    :meth:`held` and waits with :meth:`wait_for`.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.watched: set[str] = set()
        self._held: list[Held] = []
        self._seq = 0
        # Called (under no lock) with each new Held, e.g. by tests.
        self.on_arrival: Callable[[Held], None] | None = None

    def watch(self, slot: str) -> None:
        with self.cond:
            self.watched.add(slot)

    def unwatch(self, slot: str) -> None:
        with self.cond:
            self.watched.discard(slot)

    def unwatch_all(self) -> None:
        """Stops holding; every request still held is delivered."""
        with self.cond:
            self.watched.clear()
            rest, self._held = self._held, []
        for h in rest:
            if h.verdict is None:
                h.decide("deliver")
            h.resume()

    def slot_of(self, environ: dict[str, Any]) -> str | None:
        app = app_id_of(environ)
        if not app or not app.startswith(APP_PREFIX):
            return None
        slot = app[len(APP_PREFIX):]
        with self.cond:
            return slot if slot in self.watched else None

    # -- middleware ------------------------------------------------------------------------
    def gate(self, environ: dict[str, Any], service: str, action: str) -> Held | None:
        """Holds a watched slot's request until the driver's verdict (None: not watched)."""
        slot = self.slot_of(environ)
        if slot is None:
            return None
        params = params_of(environ, service)
        with self.cond:
            self._seq += 1
            h = Held(self._seq, slot, service, action, params)
            self._held.append(h)
            self.cond.notify_all()
        if self.on_arrival is not None:
            self.on_arrival(h)
        h.wait_verdict()
        with self.cond:
            if h in self._held:
                self._held.remove(h)
            self.cond.notify_all()
        return h

    # -- driver ----------------------------------------------------------------------------
    def held(self, slot: str | None = None) -> list[Held]:
        """Requests waiting for a verdict, in arrival order."""
        with self.cond:
            return [h for h in self._held if h.verdict is None and (slot is None or h.slot == slot)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Waits until ``predicate()`` (re-checked on every arrival, and every 20 ms)."""
        end = time.time() + timeout
        with self.cond:
            while not predicate():
                left = end - time.time()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.02))
        return True

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()
