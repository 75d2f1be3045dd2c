"""Lambda Runtime API (``/2018-06-01/runtime/...``) that the real binary polls, exactly as
in Lambda: ``GET invocation/next`` long-polls for an event, ``POST invocation/{id}/response``
or ``.../error`` answers it, ``POST init/error`` fails the invocation that started the init.

Invocations are queued by the admin API (``/invoke``, ``/invoke-many``, ``/rotate``). Each
poller gets one invocation at a time, so several runtimes polling at once (several binaries)
run queued events at the same moment. A poller that hung up before its event was sent does
not eat it: the event goes back to the front of the queue.
"""

from __future__ import annotations

import collections
import json
import logging
import select
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any

from .common import QuietHandler, now_ms, parse_json

log = logging.getLogger("standin.runtime")


class Invocation:
    """One queued event, its deadline and, once answered, its result."""

    def __init__(self, event: Any, deadline_seconds: float, function_arn: str):
        self.id = str(uuid.uuid4())
        self.body = json.dumps(event).encode()
        self.event = event
        self.created = time.time()
        self.deadline_ms = now_ms() + int(deadline_seconds * 1000)
        self.function_arn = function_arn
        self.trace_id = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"
        self.delivered_at: float | None = None
        self.delivered_to: str | None = None  # the poller's address (host:port)
        self.finished_at: float | None = None
        self.done = threading.Event()
        self.result: dict[str, Any] | None = None

    def finish(self, result: dict[str, Any]) -> bool:
        if self.done.is_set():
            return False
        self.result = result
        self.finished_at = time.time()
        self.done.set()
        return True

    def summary(self) -> dict[str, Any]:
        return {
            "request_id": self.id,
            "event": self.event,
            "created": self.created,
            "deadline_ms": self.deadline_ms,
            "delivered": self.delivered_at is not None,
            "delivered_at": self.delivered_at,
            "delivered_to": self.delivered_to,
            "finished_at": self.finished_at,
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
        return self.enqueue_many([event], deadline_seconds)[0]

    def enqueue_many(self, events: list[Any], deadline_seconds: float) -> list[Invocation]:
        """Queues all events at once (pollers waiting now see all of them together)."""
        invs = [Invocation(e, deadline_seconds, self.function_arn) for e in events]
        with self.cond:
            for inv in invs:
                self.by_id[inv.id] = inv
                self.history.append(inv)
                self.queue.append(inv)
            self.cond.notify_all()
        return invs

    def invoke(self, event: Any, deadline_seconds: float, grace: float | None = None) -> tuple[Invocation, dict[str, Any]]:
        """Queue an invocation and wait for its outcome (or the deadline plus a grace)."""
        t0 = time.time()
        inv = self.enqueue(event, deadline_seconds)
        return inv, self.wait(inv, deadline_seconds, t0, grace)

    def invoke_many(self, events: list[Any], deadline_seconds: float) -> list[dict[str, Any]]:
        """Queue all events at once, wait for every outcome; results in the events' order."""
        t0 = time.time()
        invs = self.enqueue_many(events, deadline_seconds)
        return [self.wait(inv, deadline_seconds, t0) for inv in invs]

    def wait(self, inv: Invocation, deadline_seconds: float, t0: float,
             grace: float | None = None) -> dict[str, Any]:
        """The outcome of a queued invocation: its result, or Sandbox.Timedout once the
        deadline plus a grace (counted from ``t0``, when it was queued) has passed."""
        if grace is None:
            grace = min(3.0, max(0.3, deadline_seconds * 0.1))
        finished = inv.done.wait(max(0.0, t0 + deadline_seconds + grace - time.time()))
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
        res["delivered_at"] = inv.delivered_at
        res["delivered_to"] = inv.delivered_to
        res["finished_at"] = inv.finished_at
        return res

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
            inv.delivered_to = "%s:%s" % handler.client_address[:2]
            return inv

    def requeue(self, inv: Invocation) -> None:
        with self.cond:
            inv.delivered_at = None
            inv.delivered_to = None
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


class RuntimeHandler(QuietHandler):
    """The Runtime API's HTTP side; ``runtime`` is bound on a subclass made at start."""

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
