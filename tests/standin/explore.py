#!/usr/bin/env python3
"""Schedule explorer: overlapping invocations of the real rotation function, their AWS
requests held by the stand-in and released in a seeded order, with crashes and lost
responses injected at seeded points, and DESIGN.md's invariants checked after every step.

    .venv/bin/python tests/standin/explore.py --seeds 1000          # seeds 1..1000
    .venv/bin/python tests/standin/explore.py --seed 17             # replay one, print its schedule
    .venv/bin/python tests/standin/explore.py --seeds 200 --no-record-check

Per seed (everything drawn from ``random.Random(seed)``, so a seed replays exactly):

* the start: a bootstrap secret (no key yet) or one completed rotation; ``OLD_KEY_ACTION``
  deactivate, delete or keep;
* a scenario of two or three *chains* (:data:`SCENARIOS`), each a caller invoking steps one
  after another on its own Lambda process (the next step only after the previous succeeded,
  as Secrets Manager does): two createSecret of one token, two whole rotations of one token,
  a re-invoked finishSecret of the previous token racing a new rotation, ...; chains after the
  first start after a seeded number of released requests;
* perhaps one operator edit (:data:`EDITS`) at a seeded point;
* a schedule: whenever every running invocation has a request held (or has ended), one held
  request is picked and released with a verdict (:mod:`sesstandin.schedule`): delivered, a
  500 before moto acts, a lost response (moto acts, the client gets a 500), or a crash (the
  process SIGKILLed with the request held, before moto acts or after it acted).

Invariants (:data:`INVARIANTS`; ``--invariants`` picks some, ``--no-record-check`` drops
``keys_recorded``), checked at each invocation's end, after every released request where they
concern an instant, at the end of the schedule and after recovery:

``current_login``  AWSCURRENT's credentials log in at the SES emulator (a real SMTP AUTH), unless
                   the schedule's operator edit broke that key on purpose (until a rotation
                   promotes another key). A pending key the operator deleted while finishSecret
                   invocations promote it may be AWSCURRENT between one invocation's end and
                   another's (each moves AWSCURRENT back after its move); at the end of the
                   schedule and after recovery that is a violation too.
``needed_key``     the function never deleted or deactivated AWSCURRENT's key, nor deleted the key
                   of a version holding AWSPENDING with a value while leaving that AWSPENDING there
                   (checked when the deleting invocation ended), and AWSCURRENT's key exists.
``key_limit``      never more than 2 keys (counted after every released request); a LimitExceeded
                   answer to CreateAccessKey is a violation when the rotation then did not recover.
``keys_named``     after a completed rotation, with every invocation ended: every key of the user is
                   named by some version of the secret (DESIGN's first-wave invariant).
``keys_recorded``  after a completed rotation, with every invocation ended: every key of the user is
                   AWSCURRENT's or has a key-record tag ``ses-smtp-rotator:key:<KEY ID>`` (Wave 3).
``recovery``       with holds off and no faults, the interrupted rotation completes as Secrets
                   Manager retries it (the same token's steps in order; a new rotation when the
                   function cleared AWSPENDING), within :data:`RECOVERY_ATTEMPTS` attempts.
``next_rotation``  then a fresh rotation completes within :data:`RECOVERY_ATTEMPTS` attempts.
``permissions``    no request of the function was refused by the role policy from template.yaml.
``liveness``       every invocation sent a request or ended within :data:`STUCK_SECONDS`; no Lambda
                   process died that the explorer did not kill.

The stand-in runs inside this process (moto, the SMTP emulator, the fault middleware with the
scheduler); each Lambda process polls a Runtime API of its own, so the driver knows which
process runs which invocation, and sends its app id (``AWS_SDK_UA_APP_ID``) in every AWS
request, so the middleware knows whose request it holds. Between seeds moto and the stand-in
are reset; the Lambda processes stay up (one set per ``OLD_KEY_ACTION``).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import random
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

REGION = "us-east-1"
ACCOUNT = "123456789012"
USER = "ses-smtp"
USER_PATH = "/ses-smtp/"
SECRET_NAME = "smtp/explore"
RECORD_TAG = "ses-smtp-rotator:key:"
ATTEMPT_TAG = "ses-smtp-rotator:creating-key:"
# Retryable answers that only the passing of time resolves (src/ownership.rs LISTING_LAG_SECS).
LAG_ERRORS = ("KeyNotYetVisible", "PendingNotReadable")
LISTING_LAG_SECS = 120
RECORD_VALUE = re.compile(r"[0-9a-f]{8}:(?:[0-9a-f]{8}|-):[mcpr]:\d+|adopt")
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")

INVARIANTS = ("current_login", "needed_key", "key_limit", "keys_named", "keys_recorded",
              "recovery", "next_rotation", "permissions", "liveness")
# The Lambda deadline of a scheduled invocation (testSecret keeps 3 s back from it), and of
# the recovery's invocations.
SCHEDULED_DEADLINE = 10.0
RECOVERY_DEADLINE = 30.0
# An invocation that neither sends a request nor ends in this long is stuck.
STUCK_SECONDS = 30.0
RECOVERY_ATTEMPTS = 4

# name -> chains; a chain is (steps, token name). "P" is the completed previous rotation's
# token (the scenario then starts after one rotation), "T" the token rotated now.
FULL = STEPS
SCENARIOS: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "create_x2": [(("createSecret",), "T"), (("createSecret",), "T")],
    "create_x3": [(("createSecret",), "T"), (("createSecret",), "T"), (("createSecret",), "T")],
    "full_x2": [(FULL, "T"), (FULL, "T")],
    "create_vs_full": [(FULL, "T"), (("createSecret",), "T")],
    "refinish_vs_create": [(("finishSecret",), "P"), (("createSecret",), "T")],
    "refinish_vs_full": [(FULL, "T"), (("finishSecret",), "P")],
    "finish_x2": [(("finishSecret",), "T"), (("finishSecret",), "T")],
    "tail_vs_full": [(FULL, "T"), (("setSecret", "testSecret", "finishSecret"), "T")],
}
# Scenarios whose token T has already passed these steps before the schedule (holds off).
PREPARED = {"finish_x2": ("createSecret", "setSecret", "testSecret"),
            "tail_vs_full": ("createSecret",)}
EDITS = ("edit_field", "edit_destination", "delete_pending_key", "deactivate_current_key")

log = logging.getLogger("explore")


# --- the stand-in, in this process -------------------------------------------------------------

def _quiet_logging() -> None:
    import warnings

    # aiosmtpd warns about the emulator's implicit-TLS listener (auth_require_tls=False there).
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="explore %(levelname)s %(name)s: %(message)s")
    for name in ("werkzeug", "mail.log", "standin", "standin.faults", "standin.runtime"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


class Slot:
    """One Lambda process with a Runtime API of its own (it runs exactly the invocations
    queued here) and its own SDK app id ``explore-<name>`` (its AWS requests are known by it)."""

    def __init__(self, world: World, name: str, old_key_action: str):
        from sesstandin.runtime import RuntimeApi, RuntimeHandler

        self.world = world
        self.name = name
        self.old_key_action = old_key_action
        self.runtime = RuntimeApi(world.st.function_arn)
        handler = type("SlotRuntimeHandler", (RuntimeHandler,), {"runtime": self.runtime})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name=f"runtime-{name}", daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = world.log_dir / f"lambda-{name}.log"
        self.killed = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure(self) -> None:
        if self.alive():
            return
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AWS_LAMBDA_LOG_FORMAT": "JSON",
               "SMTP_TEST_TIMEOUT_SECONDS": "2", "SMTP_CONNECT_TIMEOUT_SECONDS": "2",
               "IAM_USER_PATH": USER_PATH}
        env.update(self.world.ready["lambda_env"])
        env.update({"AWS_LAMBDA_RUNTIME_API": self.address,
                    "AWS_SDK_UA_APP_ID": f"explore-{self.name}",
                    "OLD_KEY_ACTION": self.old_key_action})
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([str(self.world.binary)], env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT)
        self.killed = False

    def kill(self) -> None:
        """SIGKILL, as a crashed or timed-out Lambda sandbox."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.killed = True

    def note(self, text: str) -> None:
        with open(self.log_path, "ab") as out:
            out.write(f"=== explore: {text}\n".encode())

    def invoke(self, event: dict[str, Any], deadline: float) -> Any:
        self.ensure()
        return self.runtime.enqueue(event, deadline)


class World:
    """The stand-in (in this process), the scheduler, SDK clients and the Lambda slots."""

    def __init__(self, binary: Path, log_dir: Path):
        os.environ["MOTO_ACCOUNT_ID"] = ACCOUNT
        os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
        import boto3
        from botocore.config import Config

        from sesstandin.app import Standin
        from sesstandin.schedule import Scheduler

        self.binary = binary
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.st = Standin(REGION, ACCOUNT)
        self.ready = self.st.start()
        self.sched = Scheduler()
        self.st.faults.scheduler = self.sched
        kw = dict(endpoint_url=self.ready["endpoint"], region_name=REGION, aws_access_key_id="test",
                  aws_secret_access_key="test",
                  config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
        self.iam = boto3.client("iam", **kw)
        self.sm = boto3.client("secretsmanager", **kw)
        self.ssl = ssl.create_default_context(cafile=self.ready["ca_file"])
        self.slots: dict[tuple[str, int], Slot] = {}

    def slot(self, old_key_action: str, i: int) -> Slot:
        key = (old_key_action, i)
        if key not in self.slots:
            self.slots[key] = Slot(self, f"{old_key_action}-{i}", old_key_action)
        return self.slots[key]

    def reset(self) -> None:
        from sesstandin.moto_patches import SECRETS_SEEN

        self.sched.unwatch_all()
        self.st.reset()
        SECRETS_SEEN.clear()
        for s in self.slots.values():
            s.runtime.clear()

    def close(self) -> None:
        self.sched.unwatch_all()
        for s in self.slots.values():
            s.kill()
            s.server.shutdown()
        self.st.cleanup()

    # -- state, read straight from moto ------------------------------------------------------
    def keys(self) -> dict[str, str]:
        """Key id -> status of the user's keys."""
        user = self.st.moto.iam().users.get(USER)
        return {k.access_key_id: k.status for k in (user.access_keys if user else [])}

    def tags(self) -> dict[str, str]:
        if USER not in self.st.moto.iam().users:
            return {}
        return {t["Key"]: t["Value"] for t in self.st.moto.iam().list_user_tags(USER)}

    def age_records(self, secs: int) -> None:
        """Moves every time the function recorded on the user (its attempts' starts, its key
        records' epochs) back by ``secs``: the model of Secrets Manager's later retry, which
        comes minutes after a retryable error, without waiting those minutes."""
        aged, gone = [], []
        for k, v in self.tags().items():
            if k.startswith(ATTEMPT_TAG):
                # An attempt's start is in its tag's key: the aged attempt is a new tag.
                token, ms, nonce = k[len(ATTEMPT_TAG):].split(".")
                gone.append(k)
                aged.append({"Key": f"{ATTEMPT_TAG}{token}.{int(ms) - secs * 1000}.{nonce}", "Value": v})
            elif k.startswith(RECORD_TAG) and v != "adopt":
                parts = v.split(":")
                if len(parts) == 4 and parts[3].isdigit():
                    parts[3] = str(int(parts[3]) - secs)
                    aged.append({"Key": k, "Value": ":".join(parts)})
        if gone:
            self.st.moto.iam().untag_user(USER, gone)
        if aged:
            self.st.moto.iam().tag_user(USER, aged)

    def versions(self, arn: str) -> dict[str, dict[str, Any]]:
        """Version id -> {"stages", "doc" (None without a value)}."""
        s = self.st.moto.secret(arn)
        out = {}
        for vid, v in list(s.versions.items()):
            doc = None
            if "secret_string" in v:
                try:
                    doc = json.loads(v["secret_string"])
                except ValueError:
                    doc = {}
            out[vid] = {"stages": list(v["version_stages"]), "doc": doc}
        return out

    def staged(self, arn: str, stage: str) -> tuple[str | None, dict[str, Any] | None]:
        for vid, v in self.versions(arn).items():
            if stage in v["stages"]:
                return vid, v["doc"]
        return None, None

    def login(self, doc: dict[str, Any]) -> tuple[bool, str]:
        """A real SMTP AUTH at the emulator with a document's credentials."""
        port = int(doc.get("port") or 587)
        tls = doc.get("tls") or ("implicit" if port in (465, 2465) else "starttls")
        try:
            if tls == "implicit":
                s: smtplib.SMTP = smtplib.SMTP_SSL("127.0.0.1", port, timeout=5, context=self.ssl)
            else:
                s = smtplib.SMTP("127.0.0.1", port, timeout=5)
                s.starttls(context=self.ssl)
            try:
                s.ehlo()
                code, _ = s.login(str(doc.get("username")), str(doc.get("password")))
                return code == 235, str(code)
            finally:
                try:
                    s.quit()
                except Exception:
                    pass
        except smtplib.SMTPAuthenticationError as e:
            return False, f"{e.smtp_code}"
        except (OSError, smtplib.SMTPException) as e:
            return False, type(e).__name__

    def denials(self) -> list[dict[str, Any]]:
        a = self.st.authorizer
        with a.lock:
            return [dict(d) for d in a.decisions if d["decision"] == "deny"]


# --- one seed ---------------------------------------------------------------------------------

@dataclass
class Plan:
    seed: int
    start: str            # "bootstrap" | "rotated"
    old_key_action: str
    scenario: str
    offsets: list[int]    # per chain: released requests before it starts
    edit: tuple[str, int] | None
    fault_rate: float     # per released request: a 500 before, or a lost response
    crash: tuple[int, str] | None  # (at the n-th release, crash_before|crash_after)
    tokens: dict[str, str]

    def describe(self) -> str:
        edit = f"{self.edit[0]} after {self.edit[1]} releases" if self.edit else "none"
        crash = f"{self.crash[1]} at release {self.crash[0]}" if self.crash else "none"
        return (f"start={self.start} OLD_KEY_ACTION={self.old_key_action} scenario={self.scenario} "
                f"chain offsets={self.offsets} edit={edit} fault_rate={self.fault_rate} crash={crash}")


def token_from(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def make_plan(seed: int, rng: random.Random) -> Plan:
    scenario = rng.choice(sorted(SCENARIOS))
    start = rng.choice(["bootstrap", "rotated"])
    if any(tok == "P" for _, tok in SCENARIOS[scenario]):
        start = "rotated"
    old_key_action = rng.choice(["deactivate", "delete", "keep"])
    n = len(SCENARIOS[scenario])
    offsets = [0] + [rng.randint(0, 8) for _ in range(n - 1)]
    edit = (rng.choice(EDITS), rng.randint(0, 14)) if rng.random() < 0.35 else None
    fault_rate = rng.choice([0.0, 0.05, 0.15])
    crash = (rng.randint(0, 24), rng.choice(["crash_before", "crash_after"])) if rng.random() < 0.5 else None
    tokens = {"P": token_from(rng), "T": token_from(rng), "N": token_from(rng)}
    return Plan(seed, start, old_key_action, scenario, offsets, edit, fault_rate, crash, tokens)


class Labels:
    """Stable names for what differs between runs of one seed (moto's random key ids,
    version ids and ARN suffix), so a replayed schedule compares equal."""

    def __init__(self, tokens: dict[str, str]):
        self.names: dict[str, str] = {v: k for k, v in tokens.items()}
        self.counts: collections.Counter[str] = collections.Counter()

    def name(self, value: str, kind: str) -> str:
        if value not in self.names:
            self.counts[kind] += 1
            self.names[value] = f"{kind}{self.counts[kind]}"
        return self.names[value]

    def key(self, key_id: str | None) -> str:
        return self.name(key_id, "K") if key_id else "-"

    def version(self, vid: str | None) -> str:
        return self.name(vid, "V") if vid else "-"

    def params(self, held: Any) -> str:
        out = []
        for k, v in held.params.items():
            if k == "AccessKeyId":
                v = self.key(v)
            elif k in ("VersionId", "MoveToVersionId", "RemoveFromVersionId", "ClientRequestToken"):
                v = self.version(v)
            elif k == "TagKeys":
                v = ",".join(self.key(x[len(RECORD_TAG):]) if x.startswith(RECORD_TAG) else x.rsplit(":", 1)[-1]
                             for x in v)
            elif k in ("UserName", "SecretId"):
                continue
            out.append(f"{k}={v}")
        return " ".join(out)


@dataclass
class Chain:
    index: int
    steps: tuple[str, ...]
    token_name: str
    offset: int
    slot: Slot
    started: bool = False
    position: int = 0               # next step to invoke
    inv: Any = None                 # the invocation in flight
    step: str | None = None
    crashed: bool = False
    done: bool = False
    deletions: list[tuple[str, str]] = field(default_factory=list)  # (version, key) this invocation deleted


@dataclass
class Result:
    seed: int
    plan: Plan
    choices: list[str]
    lines: list[str]
    violations: list[tuple[str, str]]
    seconds: float
    notes: collections.Counter[str]


class Run:
    """One seed: set-up, the schedule, the checks, the recovery."""

    def __init__(self, world: World, seed: int, invariants: set[str]):
        self.w = world
        self.seed = seed
        self.rng = random.Random(seed)
        self.plan = make_plan(seed, self.rng)
        self.inv = invariants
        self.labels = Labels(self.plan.tokens)
        self.choices: list[str] = []
        self.lines: list[str] = []
        self.violations: list[tuple[str, str]] = []
        self.notes: collections.Counter[str] = collections.Counter()
        self.arn = ""
        self.releases = 0
        self.broken_keys: set[str] = set()     # keys the operator edit broke on purpose
        self.operator_deleted: set[str] = set()
        self.deadlines: list[float] = []        # of every scheduled invocation
        self.limit_exceeded = 0
        self.edit_done = False
        self.crash_done = False

    # -- records -------------------------------------------------------------------------
    def choice(self, text: str, detail: str = "") -> None:
        self.choices.append(text)
        self.lines.append(text + (f"  [{detail}]" if detail else ""))

    def line(self, text: str) -> None:
        self.lines.append("  " + text)

    def violate(self, invariant: str, where: str, message: str) -> None:
        if invariant in self.inv:
            self.violations.append((invariant, f"{where}: {message}"))
            self.lines.append(f"  !! {invariant}: {where}: {message}")

    # -- set-up --------------------------------------------------------------------------
    def slot(self, i: int) -> Slot:
        return self.w.slot(self.plan.old_key_action, i)

    def setup(self) -> None:
        w = self.w
        w.reset()
        for i in range(4):
            self.slot(i).note(f"seed {self.seed}")
        w.iam.create_user(UserName=USER, Path=USER_PATH)
        doc = {"iam_user": USER, "host": "localhost", "port": w.ready["smtp_starttls_port"],
               "tls": "starttls", "region": REGION, "team": {"owner": "mail-ops"}}
        self.arn = w.sm.create_secret(Name=SECRET_NAME, SecretString=json.dumps(doc))["ARN"]
        self.labels.names[self.arn] = "S"
        w.st.orchestrator.set_rotation(self.arn, True)
        from sesstandin.admin import ROUTES

        ROUTES[("POST", "/policy")](w.st, {}, {
            "label": f"single:{self.arn}", "variant": "single",
            "parameters": {"SmtpIamUserName": USER, "SmtpIamUserPath": USER_PATH},
            "physical": {"SmtpSecret": self.arn}})
        if self.plan.start == "rotated":
            ok, out = self.rotate(self.plan.tokens["P"], STEPS, RECOVERY_DEADLINE)
            if not ok:
                raise SetupFailed(f"the set-up rotation failed: {out}")
        prepared = PREPARED.get(self.plan.scenario, ())
        w.st.orchestrator.create_pending(self.arn, self.plan.tokens["T"])
        if prepared:
            ok, out = self.rotate(self.plan.tokens["T"], prepared, RECOVERY_DEADLINE, pending=False)
            if not ok:
                raise SetupFailed(f"the set-up steps {prepared} failed: {out}")
        self.lines.append(f"set-up: {self.plan.start}" + (f", T through {prepared[-1]}" if prepared else ""))

    def event(self, step: str, token: str) -> dict[str, Any]:
        return {"Step": step, "SecretId": self.arn, "ClientRequestToken": token,
                "RotationToken": "explore-rotation-token"}

    def rotate(self, token: str, steps: tuple[str, ...], deadline: float,
               pending: bool = True) -> tuple[bool, str]:
        """Steps in order on slot 0 with holds off, stopping at the first failure; after a
        finishSecret that succeeded, AWSPENDING leaves the token's version (Secrets Manager)."""
        if pending:
            self.w.st.orchestrator.create_pending(self.arn, token)
        slot = self.slot(0)
        for step in steps:
            inv = slot.invoke(self.event(step, token), deadline)
            if not inv.done.wait(deadline + 5):
                slot.kill()
                return False, f"{step}: no answer within its deadline"
            res = inv.result or {}
            if not res.get("ok"):
                return False, f"{step}: {res.get('error_type')}: {str(res.get('error_message'))[:300]}"
        if "finishSecret" in steps:
            self.sm_end_rotation(token)
        return True, "ok"

    def sm_end_rotation(self, token: str) -> None:
        v = self.w.st.moto.secret(self.arn).versions.get(token)
        if v is not None and "AWSPENDING" in v["version_stages"]:
            v["version_stages"].remove("AWSPENDING")

    # -- the schedule ----------------------------------------------------------------------
    def run(self) -> None:
        chains = [Chain(i, steps, tok, self.plan.offsets[i], self.slot(i))
                  for i, (steps, tok) in enumerate(SCENARIOS[self.plan.scenario])]
        for c in chains:
            c.slot.ensure()
            self.w.sched.watch(c.slot.name)
        while True:
            for c in chains:
                if not c.started and c.offset <= self.releases:
                    c.started = True
                    self.next_step(c)
            if self.plan.edit and not self.edit_done and self.plan.edit[1] <= self.releases:
                self.edit_done = True
                self.operator_edit(self.plan.edit[0])
            live = [c for c in chains if c.inv is not None]
            if not live:
                waiting = [c for c in chains if not c.started]
                if not waiting:
                    break
                waiting[0].offset = self.releases  # nothing runs: start the next chain now
                continue
            ok = self.w.sched.wait_for(lambda: all(self.ready_chain(c) for c in live), STUCK_SECONDS)
            if not ok:
                stuck = [c for c in live if not self.ready_chain(c)]
                for c in stuck:
                    self.violate("liveness", f"c{c.index} {c.step}", f"neither sent a request nor ended in {STUCK_SECONDS:.0f} s")
                    c.slot.kill()
                    c.inv.finish({"ok": False, "error_type": "Explore.Stuck", "error_message": "stuck"})
                continue
            for c in live:
                if not c.inv.done.is_set() and time.time() * 1000 > c.inv.deadline_ms:
                    self.time_out(c)
            ended = [c for c in live if c.inv.done.is_set() or not c.slot.alive()]
            if ended:
                for c in ended:
                    self.end_invocation(c)
                continue
            held = {c.index: self.w.sched.held(c.slot.name)[0] for c in live}
            pick = self.rng.choice(sorted(held))
            self.release([c for c in live if c.index == pick][0], held[pick])
        self.w.sched.unwatch_all()
        self.line("schedule ended")
        self.check_state("end of schedule", complete_checks=True)

    def ready_chain(self, c: Chain) -> bool:
        return (c.inv.done.is_set() or not c.slot.alive() or bool(self.w.sched.held(c.slot.name))
                or time.time() * 1000 > c.inv.deadline_ms)

    def time_out(self, c: Chain) -> None:
        """Lambda ends an invocation at its deadline: the process is killed (a request it
        has held never reaches moto)."""
        c.slot.kill()
        for h in self.w.sched.held(c.slot.name):
            h.decide("crash_before")
        c.crashed = True
        c.inv.finish({"ok": False, "error_type": "Sandbox.Timedout",
                      "error_message": f"Task timed out after {SCHEDULED_DEADLINE:.2f} seconds"})
        self.choice(f"timeout c{c.index} {c.step}", "the deadline passed; the process was killed")

    def next_step(self, c: Chain) -> None:
        if c.position >= len(c.steps):
            c.done = True
            return
        c.step = c.steps[c.position]
        c.position += 1
        c.deletions = []
        c.inv = c.slot.invoke(self.event(c.step, self.plan.tokens[c.token_name]), SCHEDULED_DEADLINE)
        self.deadlines.append(c.inv.deadline_ms / 1000)
        self.choice(f"start c{c.index} {c.step} {c.token_name}")

    def end_invocation(self, c: Chain) -> None:
        if not c.inv.done.is_set():
            # The process died without being killed by the explorer.
            code = c.slot.proc.returncode if c.slot.proc else None
            self.violate("liveness", f"c{c.index} {c.step}", f"the Lambda process exited on its own (status {code})")
            c.inv.finish({"ok": False, "error_type": "Explore.ProcessDied", "error_message": str(code)})
        res = c.inv.result or {}
        ok = bool(res.get("ok"))
        detail = "" if ok else f"{res.get('error_type')}: {str(res.get('error_message'))[:240]}"
        self.choice(f"end c{c.index} {c.step} {'ok' if ok else res.get('error_type')}", detail)
        self.notes[f"{c.step} {'ok' if ok else res.get('error_type')}"] += 1
        c.inv = None
        if not c.crashed:
            self.check_deletions(c)
        self.check_state(f"after c{c.index} {c.step}", complete_checks=False)
        if ok and c.step == "finishSecret" and c.position == len(c.steps):
            self.sm_end_rotation(self.plan.tokens[c.token_name])
        if ok and not c.crashed:
            self.next_step(c)
        else:
            c.done = True

    # -- releasing one request ---------------------------------------------------------------
    def verdict(self) -> str:
        if self.plan.crash and not self.crash_done and self.plan.crash[0] <= self.releases:
            self.crash_done = True
            return self.plan.crash[1]
        if self.plan.fault_rate and self.rng.random() < self.plan.fault_rate:
            return self.rng.choice(["fail_before", "lost"])
        return "deliver"

    def release(self, c: Chain, h: Any) -> None:
        verdict = self.verdict()
        cur_vid, cur_doc = self.w.staged(self.arn, "AWSCURRENT")
        cur_key = (cur_doc or {}).get("username")
        pending_keys = {vid: v["doc"].get("username") for vid, v in self.w.versions(self.arn).items()
                        if "AWSPENDING" in v["stages"] and v["doc"] and v["doc"].get("username")}
        what = f"{h.service}:{h.action} {self.labels.params(h)}".rstrip()
        if verdict == "crash_before":
            c.slot.kill()
            h.decide(verdict)
            h.wait_finished(10)
        elif verdict == "crash_after":
            h.decide(verdict)
            h.wait_performed(10)
            c.slot.kill()
            h.resume()
            h.wait_finished(10)
        else:
            h.decide(verdict)
            if not h.wait_finished(60):
                self.violate("liveness", f"c{c.index} {c.step}", f"{what} not answered within 60 s")
        self.releases += 1
        answer = f"moto {h.moto_status}" if h.acted else "moto did not act"
        if h.status and h.status >= 400:
            answer += f", client got {h.status} {h.error_code or ''}".rstrip()
        self.choice(f"release c{c.index} {what} -> {verdict}", answer)
        if verdict.startswith("crash"):
            c.crashed = True
            c.inv.finish({"ok": False, "error_type": "Sandbox.Crashed",
                          "error_message": f"SIGKILLed {'before' if verdict == 'crash_before' else 'after'} moto acted on {h.action}"})
        self.after_release(c, h, cur_vid, cur_key, pending_keys)

    def after_release(self, c: Chain, h: Any, cur_vid: str | None, cur_key: str | None,
                      pending_keys: dict[str, str]) -> None:
        keys = self.w.keys()
        if len(keys) > 2:
            self.violate("key_limit", f"after release {self.releases}", f"the user has {len(keys)} keys")
        if h.action == "CreateAccessKey" and h.error_code == "LimitExceeded":
            self.limit_exceeded += 1
            self.notes["LimitExceeded answers"] += 1
            self.line(f"note: CreateAccessKey answered LimitExceeded (c{c.index} {c.step})")
        if not h.acted or h.moto_status != 200:
            return
        key = h.params.get("AccessKeyId")
        where = f"c{c.index} {c.step}, release {self.releases}"
        if h.action == "DeleteAccessKey" and key:
            if key == cur_key:
                self.violate("needed_key", where, f"deleted AWSCURRENT's key {self.labels.key(key)}")
            for vid, k in pending_keys.items():
                if k == key and vid != cur_vid:
                    c.deletions.append((vid, key))
        if h.action == "UpdateAccessKey" and key and h.params.get("Status") == "Inactive" and key == cur_key:
            self.violate("needed_key", where, f"deactivated AWSCURRENT's key {self.labels.key(key)}")

    def check_deletions(self, c: Chain) -> None:
        versions = self.w.versions(self.arn)
        for vid, key in c.deletions:
            v = versions.get(vid)
            if v and "AWSPENDING" in v["stages"] and v["doc"] and v["doc"].get("username") == key:
                self.violate("needed_key", f"after c{c.index} {c.step}",
                             f"deleted key {self.labels.key(key)} of pending version {self.labels.version(vid)}, "
                             "which still holds AWSPENDING")

    # -- operator edits ---------------------------------------------------------------------
    def operator_edit(self, kind: str) -> None:
        w = self.w
        cur_vid, cur = w.staged(self.arn, "AWSCURRENT")
        keys = w.keys()
        detail = ""
        if kind in ("edit_field", "edit_destination"):
            doc = dict(cur or {})
            if kind == "edit_field":
                doc["team"] = {"owner": "mail-ops", "edited": self.releases}
            else:
                doc["port"], doc["tls"] = w.ready["smtp_tls_port"], "implicit"
            w.sm.put_secret_value(SecretId=self.arn, SecretString=json.dumps(doc), VersionStages=["AWSCURRENT"])
            detail = "a new AWSCURRENT version"
        elif kind == "delete_pending_key":
            target = None
            for vid, v in w.versions(self.arn).items():
                k = (v["doc"] or {}).get("username")
                if "AWSPENDING" in v["stages"] and "AWSCURRENT" not in v["stages"] and k in keys:
                    target = k
            if target is None:
                detail = "skipped: no pending version names an existing key"
            else:
                w.iam.delete_access_key(UserName=USER, AccessKeyId=target)
                self.operator_deleted.add(target)
                detail = f"deleted {self.labels.key(target)}"
        elif kind == "deactivate_current_key":
            k = (cur or {}).get("username")
            if k in keys:
                w.iam.update_access_key(UserName=USER, AccessKeyId=k, Status="Inactive")
                self.broken_keys.add(k)
                detail = f"deactivated {self.labels.key(k)}"
            else:
                detail = "skipped: AWSCURRENT names no existing key"
        self.choice(f"edit {kind}", detail)

    # -- invariants on the state ---------------------------------------------------------------
    def check_state(self, where: str, complete_checks: bool) -> None:
        w = self.w
        versions = w.versions(self.arn)
        keys = w.keys()
        cur = next((v["doc"] for v in versions.values() if "AWSCURRENT" in v["stages"]), None)
        cur_key = (cur or {}).get("username")
        if cur_key:
            if cur_key not in keys and cur_key not in self.operator_deleted:
                self.violate("needed_key", where, f"AWSCURRENT names key {self.labels.key(cur_key)}, which does not exist")
            if "current_login" in self.inv and cur_key not in self.broken_keys:
                ok, why = w.login(cur or {})
                if not ok and cur_key in self.operator_deleted and not complete_checks:
                    # The operator deleted the pending key while finishSecret invocations were
                    # promoting it (after their check, before their stage move): a stage move
                    # is no transaction, so another invocation may still hold AWSCURRENT on it
                    # for a moment. Each moves it back after its move; once every invocation
                    # has ended (end of schedule, after recovery) this is checked strictly.
                    self.line(f"    (transient: AWSCURRENT on {self.labels.key(cur_key)}, deleted by the operator mid-promotion)")
                    self.notes["transient current on an operator-deleted key"] += 1
                elif not ok:
                    self.violate("current_login", where,
                                 f"AWSCURRENT's credentials ({self.labels.key(cur_key)}, "
                                 f"{keys.get(cur_key, 'absent')}) do not log in: {why}")
        if not complete_checks:
            return
        pending = [vid for vid, v in versions.items()
                   if "AWSPENDING" in v["stages"] and "AWSCURRENT" not in v["stages"]]
        if pending:
            self.line(f"{where}: rotation not complete (AWSPENDING on {self.labels.version(pending[0])})")
            return
        named = {(v["doc"] or {}).get("username") for v in versions.values()}
        tags = w.tags()
        for k, status in sorted(keys.items(), key=lambda kv: self.labels.key(kv[0])):
            if k not in named:
                self.violate("keys_named", where, f"key {self.labels.key(k)} ({status}) is named by no version")
            record = tags.get(RECORD_TAG + k)
            if k != cur_key and record is None:
                self.violate("keys_recorded", where, f"key {self.labels.key(k)} ({status}) is not AWSCURRENT's "
                             "and has no key-record tag")
            elif record is not None and not RECORD_VALUE.fullmatch(record):
                self.violate("keys_recorded", where, f"key {self.labels.key(k)}'s record {record!r} is not "
                             "<secret8>:<token8>:<m|c|p|r>:<epoch> nor 'adopt'")

    # -- recovery ------------------------------------------------------------------------------
    def recover(self) -> None:
        """With holds off and no faults, the rotation completes as Secrets Manager retries it,
        then a fresh rotation completes too."""
        versions = self.w.versions(self.arn)
        pending = [vid for vid, v in versions.items() if "AWSPENDING" in v["stages"]]
        if pending and not self.complete("recovery", pending[0]):
            # Secrets Manager would not start another rotation over an incomplete one ("A
            # previous rotation isn't complete. That rotation will be reattempted.").
            self.line("next_rotation: not tried, the interrupted rotation never completed")
        else:
            self.complete("next_rotation", self.plan.tokens["N"])
        self.check_state("after recovery", complete_checks=True)
        if self.limit_exceeded and any(v[0] in ("recovery", "next_rotation") for v in self.violations):
            self.violate("key_limit", "recovery", "a LimitExceeded answer preceded a rotation that did not recover")
        denials = self.w.denials()
        for d in denials:
            self.violate("permissions", "role policy", f"AccessDenied {d.get('action')} on {d.get('resource')}")

    def complete(self, invariant: str, token: str) -> bool:
        name = self.labels.version(token)
        errors = []
        for attempt in range(1, RECOVERY_ATTEMPTS + 1):
            if attempt > 1:
                self.wait_leases()
                if errors and errors[-1].split(":")[-1].strip() in LAG_ERRORS:
                    # The function waits out IAM's and Secrets Manager's read lag (a key not
                    # listed, a value not readable) for LISTING_LAG_SECS (src/ownership.rs)
                    # after the attempt that made the key; Secrets Manager's retry comes that
                    # much later in production.
                    self.w.age_records(LISTING_LAG_SECS + 1)
                    self.line(f"{invariant}: {LISTING_LAG_SECS + 1} s pass (the function's records aged)")
            v = self.w.st.moto.secret(self.arn).versions.get(token)
            if v is None:
                self.w.st.orchestrator.create_pending(self.arn, token)
            elif "AWSPENDING" not in v["version_stages"]:
                # The function cleared AWSPENDING: Secrets Manager's next rotation starts fresh.
                token = token_from(self.rng)
                name = self.labels.version(token)
                self.w.st.orchestrator.create_pending(self.arn, token)
                self.line(f"{invariant}: AWSPENDING was cleared; a new rotation {name}")
            ok, out = self.rotate(token, STEPS, RECOVERY_DEADLINE, pending=False)
            self.line(f"{invariant} attempt {attempt} ({name}): {out}")
            if ok:
                self.notes[f"{invariant} attempts={attempt}"] += 1
                return True
            errors.append(out[:out.index(":", out.index(":") + 1)] if out.count(":") >= 2 else out)
        self.violate(invariant, f"rotation {name}", f"not complete after {RECOVERY_ATTEMPTS} attempts: {errors}")
        return False

    def wait_leases(self) -> None:
        """An attempt's lease lasts until it recorded its end or its deadline passed (a killed
        one, or one that could not record its end, runs out): Secrets Manager's retry comes
        after every scheduled invocation's deadline (the function's clock has 1 s steps and it
        allows 2 s of clock skew, so the lease can last 3 s past the deadline)."""
        until = max(self.deadlines, default=0.0) + 3.5
        time.sleep(max(0.1, until - time.time()))


class SetupFailed(Exception):
    pass


def run_seed(world: World, seed: int, invariants: set[str]) -> Result:
    t0 = time.time()
    run = Run(world, seed, invariants)
    try:
        run.setup()
        run.run()
        run.recover()
    except SetupFailed as e:
        run.violations.append(("liveness", f"set-up: {e}"))
        run.lines.append(f"  !! set-up: {e}")
    except Exception as e:  # noqa: BLE001 - a stand-in error must name the seed, not kill the pool
        what = f"{type(e).__name__}: {getattr(e, 'message', None) or e}"
        run.violations.append(("liveness", f"the explorer or stand-in failed: {what}"))
        run.lines.append(f"  !! the explorer or stand-in failed: {what}")
    finally:
        world.sched.unwatch_all()
    return Result(seed, run.plan, run.choices, run.lines, run.violations, time.time() - t0, run.notes)


# --- workers: one stand-in and one set of Lambda processes each ---------------------------------

_WORKER: dict[str, Any] = {}


def _worker_init(binary: str, log_dir: str, invariants: set[str]) -> None:
    _quiet_logging()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool
    d = Path(log_dir) / f"worker-{os.getpid()}"
    world = World(Path(binary), d)
    _WORKER.update(world=world, invariants=invariants)
    import atexit

    atexit.register(world.close)


def _worker_seed(seed: int) -> Result:
    return run_seed(_WORKER["world"], seed, _WORKER["invariants"])


def run_seeds(seeds: list[int], jobs: int, binary: Path, log_dir: Path, invariants: set[str]):  # type: ignore[no-untyped-def]
    """Yields each seed's Result (in seed order with one job; as they finish otherwise)."""
    if jobs <= 1:
        world = World(binary, log_dir)
        try:
            for seed in seeds:
                yield run_seed(world, seed, invariants)
        finally:
            world.close()
        return
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init,
                                                initargs=(str(binary), str(log_dir), invariants)) as pool:
        yield from pool.map(_worker_seed, seeds, chunksize=1)


# --- the command line ------------------------------------------------------------------------------

def print_result(r: Result, out: Any = sys.stdout) -> None:
    print(f"seed {r.seed}: {r.plan.describe()}", file=out)
    for line in r.lines:
        print("  " + line, file=out)
    print(f"  ({r.seconds:.2f} s, {len(r.violations)} violation(s))", file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=1000, help="how many seeds (default 1000)")
    ap.add_argument("--first", type=int, default=1, help="the first seed (default 1)")
    ap.add_argument("--seed", type=int, action="append", help="replay these seeds and print their schedules")
    ap.add_argument("--invariants", default=",".join(INVARIANTS),
                    help=f"comma-separated subset of {', '.join(INVARIANTS)}")
    ap.add_argument("--no-record-check", action="store_true", help="leave out keys_recorded (the Wave 3 key record)")
    ap.add_argument("--bin", default=os.environ.get("SES_SMTP_ROTATOR_BIN") or str(ROOT / "target/lambda-host/bootstrap"))
    ap.add_argument("--show", type=int, default=5, help="print the schedules of this many failing seeds (default 5)")
    ap.add_argument("--verbose", action="store_true", help="print every seed's schedule")
    ap.add_argument("--jobs", "-j", type=int, default=int(os.environ.get("EXPLORE_JOBS", "6")),
                    help="seeds run in parallel, each worker with its own stand-in (default 6, EXPLORE_JOBS; "
                         "the explorer mostly waits, so more jobs than cores pays)")
    ap.add_argument("--json", help="write every seed's result to this file (JSON lines)")
    ap.add_argument("--log-dir", default=None, help="the Lambda processes' output (default: a temp dir)")
    args = ap.parse_args(argv)

    invariants = {x.strip() for x in args.invariants.split(",") if x.strip()}
    unknown = invariants - set(INVARIANTS)
    if unknown:
        ap.error(f"unknown invariants {sorted(unknown)}; known: {', '.join(INVARIANTS)}")
    if args.no_record_check:
        invariants.discard("keys_recorded")
    binary = Path(args.bin)
    if not os.access(binary, os.X_OK):
        ap.error(f"no executable binary at {binary} (make lambda-bin, or SES_SMTP_ROTATOR_BIN)")
    seeds = args.seed or list(range(args.first, args.first + args.seeds))

    _quiet_logging()
    log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="ses-explore-"))
    per_invariant: collections.Counter[str] = collections.Counter()
    failing: dict[str, list[int]] = collections.defaultdict(list)
    notes: collections.Counter[str] = collections.Counter()
    failed: list[Result] = []
    jf = open(args.json, "w") if args.json else None
    t0 = time.time()
    print(f"explore: {len(seeds)} seed(s), binary {binary}, invariants {', '.join(sorted(invariants))}", flush=True)
    jobs = 1 if args.seed else max(1, args.jobs)
    try:
        for i, r in enumerate(run_seeds(seeds, jobs, binary, log_dir, invariants), 1):
            notes.update(r.notes)
            kinds = sorted({v[0] for v in r.violations})
            for k in kinds:
                per_invariant[k] += 1
                failing[k].append(r.seed)
            if r.violations:
                failed.append(r)
            if args.seed or args.verbose:
                print_result(r)
            elif i % 50 == 0 or i == len(seeds):
                print(f"  {i}/{len(seeds)} seeds, {time.time() - t0:.0f} s, "
                      f"{len(failed)} with violations", flush=True)
            if jf:
                jf.write(json.dumps({"seed": r.seed, "plan": r.plan.describe(), "violations": r.violations,
                                     "choices": r.choices, "seconds": round(r.seconds, 3)}) + "\n")
    finally:
        if jf:
            jf.close()
    elapsed = time.time() - t0
    print(f"\nexplore: {len(seeds)} seeds in {elapsed:.0f} s ({elapsed / max(1, len(seeds)):.2f} s per seed, "
          f"{jobs} job(s)); Lambda output in {log_dir}")
    print("violations per invariant (seeds):")
    for k in INVARIANTS:
        if k in invariants:
            seeds_k = failing.get(k, [])
            ex = ", ".join(map(str, seeds_k[:12])) + (" ..." if len(seeds_k) > 12 else "")
            print(f"  {k:14} {per_invariant.get(k, 0):5}" + (f"   e.g. seeds {ex}" if seeds_k else ""))
    print("outcomes seen: " + ", ".join(f"{k} x{v}" for k, v in sorted(notes.items())))
    if failed and not args.seed:
        print(f"\nfailing seeds: {' '.join(str(r.seed) for r in failed)}")
        # One example per invariant violated (the first seed that violates it), then more.
        shown: list[Result] = []
        for k in INVARIANTS:
            r = next((r for r in failed if any(v[0] == k for v in r.violations)), None)
            if r is not None and r not in shown and len(shown) < args.show:
                shown.append(r)
        shown += [r for r in failed if r not in shown][:max(0, args.show - len(shown))]
        for r in shown:
            print()
            print_result(r)
        print(f"\nreplay one: make explore SEED=<n>   (or {Path(__file__).relative_to(ROOT)} --seed <n>)")
    if not failed and not args.log_dir:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
