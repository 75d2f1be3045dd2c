#!/usr/bin/env python3
"""`make bench`: the Rust rotator beside a Python rotator of the same contract, as a table.

Both run as Lambda functions against the same local stand-ins (tests/standin/) in one run:
the Lambda's own binary (deploy/build-lambda.sh: static musl, built for x86_64 here as the
stand-in for the arm64 one; `make bench` builds it), and bench/python_rotator/ (boto3 + smtplib, its own Runtime API loop)
under the stand-in venv's Python. Per figure the table shows Rust, Python and their ratio,
with the issue's targets printed beside them, never asserted.

Figures, not assertions: nothing here fails because a number is high. It fails (exit 1)
only when something does not work (a rotation fails, a Lambda does not start, the CLI prints
a wrong password). Everything runs on 127.0.0.1; every process started here is stopped and
the temp dir removed before it exits.

    .venv/bin/python bench/bench.py --bin target/lambda-host/bootstrap

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import hmac
import io
import json
import os
import shutil
import signal
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import boto3

ROOT = Path(__file__).resolve().parent.parent
PY_ROTATOR = ROOT / "bench" / "python_rotator"
sys.path.insert(0, str(ROOT / "tests" / "standin"))
from launch import start_standin, stop_standin  # noqa: E402

STEPS = ["createSecret", "setSecret", "testSecret", "finishSecret"]
LAMBDA_MIB = 128  # the function's MemorySize in template.yaml
# The published example secret access key (AWS documentation); not a real credential.
EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CLI_REGION = "us-east-1"
PATH_ENV = os.environ.get("PATH", "/usr/bin:/bin")
SMTP_TEST_TIMEOUT = 40  # seconds: above the longest propagation delay plus the 8 s backoff cap
# The targets (issue 14), printed beside the figures.
TARGET_COLD_RATIO = 100  # cold start <= 1/100 of Python's
TARGET_RSS_RATIO = 6  # peak RSS <= 1/6 of Python's
TARGET_ZIP_BYTES = 3_000_000  # arm64 Lambda zip <= 3 MB
TARGET_WASTE_S = 1.0  # propagation: <= 1 s median waste ...
TARGET_AUTH_RATE = 1.0  # ... at <= 1 AUTH attempt per second on average


# --- small helpers ------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def ms(x: float) -> str:
    return f"{x:.1f} ms" if x < 100 else f"{x:.0f} ms"


def secs(x: float) -> str:
    return f"{x:.2f} s"


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f} MiB"


def count(x: float) -> str:
    return f"{x:g}"


@dataclass
class Stat:
    """A sample: median with min and max."""

    values: list[float]

    @property
    def med(self) -> float:
        return statistics.median(self.values)

    def fmt(self, unit: Callable[[float], str]) -> str:
        lo, hi = min(self.values), max(self.values)
        if len(self.values) == 1 or lo == hi:
            return unit(self.med)
        return f"{unit(self.med)} ({unit(lo).split()[0]}–{unit(hi)})"


def cpu_ms(x: float) -> str:
    """CPU time read in clock ticks: 0 means less than one tick."""
    tick = 1000 / os.sysconf("SC_CLK_TCK")
    return f"<{tick:.0f} ms" if x == 0 else ms(x)


def ratio(rust: float | None, python: float | None) -> str:
    """Python ÷ Rust, as "N×" (">N×" when Rust read 0 clock ticks)."""
    if rust is None or python is None:
        return ""
    if rust <= 0:
        tick = 1000 / os.sysconf("SC_CLK_TCK")
        return f">{python / tick:.0f}×" if python > 0 else "—"
    r = python / rust
    return f"{r:.0f}×" if r >= 10 else f"{r:.2f}×"


def reference_password(secret: str, region: str) -> str:
    """SES SMTP password, SigV4 derivation (DESIGN.md), to check the CLI's answer."""
    k = hmac.new(("AWS4" + secret).encode(), b"11111111", hashlib.sha256).digest()
    for part in (region, "ses", "aws4_request", "SendRawEmail"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return base64.b64encode(b"\x04" + k).decode()


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (bytes) of a live process."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) * 1024  # kB
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(p: subprocess.Popen | None) -> None:
    if p is not None and p.poll() is None:
        p.kill()
    if p is not None:
        p.wait()


def elf_kind(f) -> str:
    """How an ELF executable (a path or an open binary file) is linked: "static PIE",
    "static, not PIE", "dynamically linked (PIE)" or "dynamically linked, not PIE"."""
    import struct
    if not hasattr(f, "read"):
        with open(f, "rb") as fh:
            return elf_kind(fh)
    head = f.read(64)
    if head[:4] != b"\x7fELF" or head[4] != 2:
        return "not an ELF64 file"
    e_type, = struct.unpack_from("<H", head, 16)
    phoff, = struct.unpack_from("<Q", head, 32)
    phentsize, phnum = struct.unpack_from("<HH", head, 54)
    rest = f.read(phoff + phentsize * phnum - 64) if phoff >= 64 else b""
    table = (head + rest)[phoff:phoff + phentsize * phnum]
    interp = any(struct.unpack_from("<I", table, i * phentsize)[0] == 3 for i in range(phnum))
    pie = e_type == 3
    if interp:
        return "dynamically linked (PIE)" if pie else "dynamically linked, not PIE"
    return "static PIE" if pie else "static, not PIE"


def zip_arch(path: Path) -> str:
    """The architecture of the `bootstrap` ELF in a Lambda zip (from its e_machine field)."""
    with zipfile.ZipFile(path) as z, z.open("bootstrap") as f:
        head = f.read(20)
    machine = int.from_bytes(head[18:20], "little") if head[:4] == b"\x7fELF" else -1
    return {0x3E: "x86_64", 0xB7: "arm64"}.get(machine, f"machine {machine}")


def parse_propagation(spec: str) -> list[tuple[float, int]]:
    """"1:3,5:3,15:1" -> [(1.0, 3), (5.0, 3), (15.0, 1)] (delay seconds : rotations)."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        delay, _, n = part.partition(":")
        out.append((float(delay), int(n or 1)))
    return out


class Table:
    """Rows of (figure, Rust, Python, Python ÷ Rust, note); a row with only a figure is a title."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def section(self, title: str) -> None:
        self.rows.append((title,))

    def add(self, what: str, rust: str, python: str = "", rat: str = "", note: str = "") -> None:
        self.rows.append(("  " + what, rust, python, rat, note))

    def print(self) -> None:
        full = [r for r in self.rows if len(r) > 1]
        head = ("figure", "Rust", "Python", "Py ÷ Rust", "note / target")
        w = [max(len(head[i]), *(len(r[i]) for r in full)) for i in range(4)]
        fmt = lambda r: "  ".join([r[0].ljust(w[0]), r[1].rjust(w[1]), r[2].rjust(w[2]),  # noqa: E731
                                   r[3].rjust(w[3]), r[4]]).rstrip()
        print(fmt(head))
        print(fmt(tuple("-" * x for x in w) + ("-" * 30,)))
        for r in self.rows:
            print(r[0] if len(r) == 1 else fmt(r))


# --- the two rotators ------------------------------------------------------------------------------

@dataclass
class Impl:
    """One rotator under test and what was measured of it."""

    name: str
    argv: list[str]
    cold_poll: Stat | None = None
    cold_poll_one_ca: Stat | None = None
    cold_cpu: Stat | None = None
    idle_rss: Stat | None = None
    cold_answer: Stat | None = None
    answer_error: str = ""
    steps: dict[str, Stat] = field(default_factory=dict)
    total: Stat | None = None
    wall: Stat | None = None
    boot_total: float = 0.0
    cpu: float = 0.0
    peak_rss: int = 0
    calls: dict[str, list[collections.Counter]] = field(default_factory=dict)
    propagation: dict[float, list[dict]] = field(default_factory=dict)


# --- the bench ----------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.bin = str(Path(args.bin).resolve())
        self.tmp = Path(tempfile.mkdtemp(prefix="ses-smtp-bench-"))
        self.standin: subprocess.Popen | None = None
        self.procs: list[subprocess.Popen] = []
        self.t = Table()
        # The Python function's package, laid out like /var/task (its .pyc land in the temp dir).
        task = self.tmp / "task"
        shutil.copytree(PY_ROTATOR, task, ignore=shutil.ignore_patterns("__pycache__"))
        impls = {"rust": Impl("Rust", [self.bin]),
                 "python": Impl("Python", [args.python, str(task / "bootstrap.py")])}
        self.impls = [impls[k] for k in args.impls.split(",")]
        self.task = task

    def impl(self, name: str) -> Impl | None:
        return next((i for i in self.impls if i.name == name), None)

    # plumbing --------------------------------------------------------------------------------
    def start_standin(self) -> None:
        self.standin, self.ready = start_standin(self.tmp / "standin.log", timeout=60)
        kw = dict(endpoint_url=self.ready["endpoint"], region_name=self.ready["region"],
                  aws_access_key_id="test", aws_secret_access_key="test")
        self.iam, self.sm = boto3.client("iam", **kw), boto3.client("secretsmanager", **kw)

    def lambda_env(self, **extra: str) -> dict[str, str]:
        return {**self.ready["lambda_env"], "SMTP_TEST_TIMEOUT_SECONDS": str(SMTP_TEST_TIMEOUT),
                "SMTP_ALLOWED_HOSTS": "localhost", "PATH": PATH_ENV, **extra}

    def spawn_lambda(self, impl: Impl, env: dict[str, str], log_name: str) -> subprocess.Popen:
        with open(self.tmp / log_name, "wb") as out:
            p = subprocess.Popen(impl.argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs.append(p)
        return p

    def log_tail(self, log_name: str) -> str:
        path = self.tmp / log_name
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""

    def admin(self, method: str, path: str, body: dict | None = None, timeout: float = 120):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.ready["admin"] + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def cleanup(self) -> None:
        for p in self.procs:
            stop(p)
        if self.standin is not None:
            stop_standin(self.standin)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # 1. package --------------------------------------------------------------------------------
    def package(self) -> None:
        self.t.section("1. Package")
        rust_zip = ""
        if self.impl("Rust"):
            n = os.stat(self.bin).st_size
            self.t.add("x86_64 binary", f"{n:,} B", "", "", f"{mib(n)}, {elf_kind(self.bin)}; {self.bin}")
            # What `sam package` puts in a Lambda zip: the binary as `bootstrap`, deflated.
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
                z.write(self.bin, "bootstrap")
            rust_zip = f"{buf.tell():,} B"
        py_zip = io.BytesIO()
        with zipfile.ZipFile(py_zip, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(PY_ROTATOR.glob("*.py")):
                z.write(f, f.name)
        self.t.add("x86_64 binary zipped as `bootstrap`", rust_zip, f"{py_zip.tell():,} B", "",
                   "deflate, as sam package zips; Python: its two .py files (boto3 is in the runtime)")
        boto = self.boto3_on_disk()
        if boto:
            self.t.add("for scale: boto3 + deps on disk", "", mib(boto), "",
                       "boto3, botocore, s3transfer, jmespath, dateutil, six, urllib3")
        for z in map(Path, self.args.lambda_zip):
            if not z.exists():
                self.t.add("Lambda zip", "not built", "", "", f"no {z}")
                continue
            size, arch = z.stat().st_size, zip_arch(z)
            with zipfile.ZipFile(z) as zf:
                unpacked = zf.getinfo("bootstrap").file_size
            built = time.strftime("%Y-%m-%d %H:%M", time.localtime(z.stat().st_mtime))
            with zipfile.ZipFile(z) as zf, zf.open("bootstrap") as f:
                kind = elf_kind(f)
            note = f"bootstrap {unpacked:,} B ({mib(unpacked)}), {kind}; built {built}"
            if arch == "arm64":
                note += f"; target ≤ {TARGET_ZIP_BYTES:,} B: {'met' if size <= TARGET_ZIP_BYTES else 'not met'}"
            self.t.add(f"{arch} Lambda zip", f"{size:,} B", "", "", note)
        if not any(zip_arch(Path(z)) == "arm64" for z in self.args.lambda_zip if Path(z).exists()):
            self.t.add("arm64 Lambda zip", "not built", "", "",
                       f"`make bench-package`; target ≤ {TARGET_ZIP_BYTES:,} B")

    @staticmethod
    def boto3_on_disk() -> int:
        import boto3 as b
        site = Path(b.__file__).resolve().parent.parent
        total = 0
        for name in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3"):
            p = site / name
            if p.is_file():
                total += p.stat().st_size
            elif p.is_dir():
                total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        return total

    # 2. CLI derivation (Rust only) -------------------------------------------------------------
    def cli(self) -> None:
        n = self.args.cli_runs
        self.t.section(f"2. CLI `smtp-password --region {CLI_REGION}`, Rust only "
                       f"(process start + derivation, {n} runs)")
        want = reference_password(EXAMPLE_SECRET, CLI_REGION)
        env = {"PATH": PATH_ENV}
        cmd = [self.bin, "smtp-password", "--region", CLI_REGION]
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            p = subprocess.run(cmd, input=EXAMPLE_SECRET.encode(), env=env, capture_output=True, timeout=30)
            times.append((time.perf_counter() - t0) * 1000)
            if p.returncode != 0 or p.stdout.decode().strip() != want:
                raise RuntimeError(f"smtp-password: exit {p.returncode}, unexpected output "
                                   f"({len(p.stdout.strip())} bytes; stderr: {p.stderr.decode()[:300]})")
        self.t.add("wall time, median (min–max)", Stat(times).fmt(ms), "", "",
                   f"p95 {ms(pct(times, 95))}; the password was checked on every run")
        base = []
        for _ in range(max(1, n // 4)):
            t0 = time.perf_counter()
            subprocess.run(["true"], env=env, capture_output=True, timeout=30)
            base.append((time.perf_counter() - t0) * 1000)
        self.t.add("for scale: `true`, median", ms(statistics.median(base)), "", "",
                   "the same spawn from Python of a do-nothing program")

    # 3. cold start -----------------------------------------------------------------------------
    def cold_start(self, impl: Impl, system_roots: bool = True) -> None:
        """Spawn → first GET /invocation/next, against a bare listener of our own.

        With `system_roots` (the figure with the target) the process gets no SSL_CERT_FILE and
        loads the system's CA store, as in production; otherwise SSL_CERT_FILE names the stand-in's
        one CA (the set-up of the runs before 2026-12-03).
        One untimed spawn first (page cache, the Python handler's .pyc), then --cold-starts."""
        firsts, cpu, rss = [], [], []
        for i in range(self.args.cold_starts + 1):
            srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                srv.bind(("127.0.0.1", 0))
                srv.listen(1)
                srv.settimeout(30)
                env = self.lambda_env(AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{srv.getsockname()[1]}")
                if system_roots:
                    env.pop("SSL_CERT_FILE", None)
                log = f"cold-{impl.name}-{i}.log"
                t0 = time.perf_counter()
                p = self.spawn_lambda(impl, env, log)
                try:
                    conn, _ = srv.accept()
                except socket.timeout:
                    raise RuntimeError(f"{impl.name} never polled the Runtime API within 30 s; its log:\n"
                                       + self.log_tail(log)) from None
                with conn:
                    conn.settimeout(10)
                    buf = b""
                    while b"\r\n\r\n" not in buf:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        buf += chunk
                    t1 = time.perf_counter()
                    line = buf.split(b"\r\n", 1)[0].decode(errors="replace")
                    if not line.startswith("GET /2018-06-01/runtime/invocation/next"):
                        raise RuntimeError(f"{impl.name}: the first Runtime API request was {line!r}")
                    if i > 0:
                        firsts.append((t1 - t0) * 1000)
                        cpu.append(cpu_seconds(p.pid) * 1000)
                        rss.append(proc_status(p.pid)["VmHWM"])
                    stop(p)
            finally:
                srv.close()
        if system_roots:
            impl.cold_poll, impl.cold_cpu, impl.idle_rss = Stat(firsts), Stat(cpu), Stat(rss)
        else:
            impl.cold_poll_one_ca = Stat(firsts)

    def cold_answer(self, impl: Impl) -> None:
        """Spawn → first invocation answered (a malformed event rejected at once)."""
        times, errs = [], set()
        for i in range(self.args.cold_starts):
            log = f"first-{impl.name}-{i}.log"
            t0 = time.perf_counter()
            env = self.lambda_env()
            env.pop("SSL_CERT_FILE", None)  # the system's CA store, as in production
            p = self.spawn_lambda(impl, env, log)
            res = self.admin("POST", "/invoke", {"event": {"Step": "nope"}, "deadline_seconds": 30}, timeout=60)
            times.append((time.perf_counter() - t0) * 1000)
            stop(p)
            if res.get("ok") or str(res.get("error_type", "")).startswith("Sandbox") \
                    or res.get("init_error"):
                raise RuntimeError(f"{impl.name}: the malformed event was not rejected: {res}; its log:\n"
                                   + self.log_tail(log))
            errs.add(res.get("error_type"))
        impl.cold_answer, impl.answer_error = Stat(times), "/".join(sorted(map(str, errs)))

    # 4 + 5 + 6. rotations, memory, AWS calls; 7. propagation -------------------------------------
    def setup_secret(self, impl: Impl) -> str:
        user = f"bench-{impl.name.lower()}"
        self.iam.create_user(UserName=user)
        doc = {"iam_user": user, "host": "localhost", "port": self.ready["smtp_starttls_port"],
               "tls": "starttls", "region": self.ready["region"]}
        arn = self.sm.create_secret(Name=f"bench/{user}", SecretString=json.dumps(doc))["ARN"]
        self.admin("POST", "/secret/rotation", {"secret_id": arn, "enabled": True})
        # Both rotators run under the role policy template.yaml deploys for this secret.
        self.admin("POST", "/policy", {"label": f"single:{arn}", "variant": "single",
                                       "parameters": {"SmtpIamUserName": user, "SmtpIamUserPath": "/"},
                                       "physical": {"SmtpSecret": arn}})
        return arn

    def rotate(self, impl: Impl, p: subprocess.Popen, arn: str, log: str) -> tuple[dict, float, float, float]:
        """One rotation through the stand-in's orchestrator: (result, wall ms, start, end)."""
        if p.poll() is not None:
            raise RuntimeError(f"{impl.name}'s Lambda exited ({p.returncode}); its log:\n" + self.log_tail(log))
        start = time.time()
        t0 = time.perf_counter()
        res = self.admin("POST", "/rotate", {"secret_id": arn, "deadline_seconds": 90})
        wall = (time.perf_counter() - t0) * 1000
        end = time.time()
        if not res.get("ok") or [s["step"] for s in res["steps"]] != STEPS:
            bad = [s for s in res.get("steps", []) if not s["ok"]]
            raise RuntimeError(f"a {impl.name} rotation failed: {bad or res}; the Lambda's log:\n"
                               + self.log_tail(log))
        return res, wall, start, end

    def step_windows(self, token: str) -> list[tuple[str, float]]:
        """(step, time the stand-in queued it) for the token's invocations, in order."""
        out = []
        for inv in self.admin("GET", "/invocations"):
            ev = inv.get("event") or {}
            if isinstance(ev, dict) and ev.get("ClientRequestToken") == token:
                out.append((ev.get("Step"), inv["created"]))
        return sorted(out, key=lambda x: x[1])

    def calls_per_step(self, token: str, end: float) -> dict[str, collections.Counter]:
        """The AWS requests the stand-in saw during each step of the token's rotation.

        A request belongs to the step whose invocation was queued last before it: during a
        rotation only the Lambda under test talks to moto (the orchestrator works in-process)."""
        windows = self.step_windows(token)
        reqs = self.admin("GET", "/requests")
        out: dict[str, collections.Counter] = {s: collections.Counter() for s in STEPS}
        for i, (step, t0) in enumerate(windows):
            t1 = windows[i + 1][1] if i + 1 < len(windows) else end
            for r in reqs:
                if t0 <= r["time"] < t1:
                    out[step][r.get("action") or "?"] += 1
        return out

    def rotations(self, impl: Impl) -> None:
        n = self.args.rotations
        log = f"rotation-{impl.name}.log"
        p = self.spawn_lambda(impl, self.lambda_env(), log)
        try:
            arn = self.setup_secret(impl)
            boot, _, _, _ = self.rotate(impl, p, arn, log)
            impl.boot_total = sum(s["duration_ms"] for s in boot["steps"])
            cpu0 = cpu_seconds(p.pid)
            runs = []
            for _ in range(n):
                res, wall, _, end = self.rotate(impl, p, arn, log)
                runs.append((res, wall, end))
            impl.cpu = (cpu_seconds(p.pid) - cpu0) / n * 1000
            for res, _, end in runs:
                for step, c in self.calls_per_step(res["token"], end).items():
                    impl.calls.setdefault(step, []).append(c)
            for step in STEPS:
                impl.steps[step] = Stat([next(s["duration_ms"] for s in r["steps"] if s["step"] == step)
                                         for r, _, _ in runs])
            impl.total = Stat([sum(s["duration_ms"] for s in r["steps"]) for r, _, _ in runs])
            impl.wall = Stat([w for _, w, _ in runs])
            impl.peak_rss = proc_status(p.pid)["VmHWM"]
            if self.args.propagation:
                self.propagation(impl, p, arn, log)
        finally:
            stop(p)

    def propagation(self, impl: Impl, p: subprocess.Popen, arn: str, log: str) -> None:
        """Rotations with the SES emulator's propagation delay on: how long after the key
        became usable did testSecret notice, and with how many AUTH attempts."""
        try:
            for delay, n in parse_propagation(self.args.propagation):
                self.admin("POST", "/smtp/config", {"propagation_delay_seconds": delay})
                for _ in range(n):
                    res, _, _, _ = self.rotate(impl, p, arn, log)
                    impl.propagation.setdefault(delay, []).append(self.propagation_run(res, delay, arn))
        finally:
            self.admin("POST", "/smtp/config", {"propagation_delay_seconds": 0})

    def propagation_run(self, res: dict, delay: float, arn: str) -> dict:
        key_id = json.loads(self.sm.get_secret_value(SecretId=arn, VersionId=res["token"])
                            ["SecretString"])["username"]
        t0 = time.time()
        keys = self.admin("GET", "/keys")
        t1 = time.time()
        key = next(k for k in keys if k["access_key_id"] == key_id)
        created = (t0 + t1) / 2 - key["age_seconds"]
        usable = created + delay
        logins = sorted((x for x in self.admin("GET", "/smtp/logins") if x["username"] == key_id),
                        key=lambda x: x["time"])
        ok = next(i for i, x in enumerate(logins) if x["code"] == 235)
        t_ok = logins[ok]["time"]
        test_dur = next(s["duration_ms"] for s in res["steps"] if s["step"] == "testSecret") / 1000
        test_start = next(t for s, t in self.step_windows(res["token"]) if s == "testSecret")
        span = t_ok - logins[0]["time"]
        return {"waste_login": t_ok - usable, "waste_answer": test_start + test_dur - usable,
                "attempts": ok + 1, "rate": ok / span if ok and span > 0 else 0.0,
                "early_misses": sum(1 for x in logins[:ok] if x["time"] >= usable)}

    # printing ----------------------------------------------------------------------------------
    def pair(self, what: str, get: Callable[[Impl], Stat | float | None], unit: Callable[[float], str],
             note: str = "") -> tuple[float | None, float | None]:
        vals: dict[str, float | None] = {}
        cells: dict[str, str] = {}
        for name in ("Rust", "Python"):
            impl = self.impl(name)
            v = get(impl) if impl else None
            if isinstance(v, Stat):
                cells[name], vals[name] = v.fmt(unit), v.med
            elif v is not None:
                cells[name], vals[name] = unit(v), v
            else:
                cells[name], vals[name] = "", None
        self.t.add(what, cells["Rust"], cells["Python"], ratio(vals["Rust"], vals["Python"]), note)
        return vals["Rust"], vals["Python"]

    @staticmethod
    def met(rust: float | None, python: float | None, factor: float) -> str:
        if rust is None or python is None:
            return ""
        return "met" if rust * factor <= python else "not met"

    def report(self) -> None:
        n = self.args.cold_starts
        self.t.section(f"3. Lambda cold start (median (min–max) of {n} spawns each, after one untimed)")
        r, p = self.pair("spawn -> first GET /invocation/next", lambda i: i.cold_poll, ms)
        self.t.rows[-1] = self.t.rows[-1][:4] + (
            f"target ratio ≥ {TARGET_COLD_RATIO}×: {self.met(r, p, TARGET_COLD_RATIO)}",)
        self.pair("  with SSL_CERT_FILE = the stand-in CA", lambda i: i.cold_poll_one_ca, ms,
                  "one CA certificate instead of the system store (the set-up of runs before 2026-12-03)")
        self.pair("CPU time until then (utime+stime)", lambda i: i.cold_cpu, cpu_ms, "/proc/<pid>/stat, in clock ticks")
        self.pair("spawn -> first invocation answered", lambda i: i.cold_answer, ms,
                  "event {\"Step\": \"nope\"} via the stand-in, rejected as "
                  + ", ".join(f"{i.name}: {i.answer_error}" for i in self.impls))

        k = self.args.rotations
        self.t.section(f"4. Rotation (median (min–max) of {k}, after one bootstrap rotation)")
        for step in STEPS:
            self.pair(step, lambda i, s=step: i.steps.get(s), lambda x: f"{x:.0f} ms")
        self.pair("total of the four steps", lambda i: i.total, lambda x: f"{x:.0f} ms")
        self.pair("whole POST /rotate", lambda i: i.wall, ms, "incl. the stand-in's AWSPENDING set-up")
        self.pair("bootstrap rotation (first), total", lambda i: i.boot_total, lambda x: f"{x:.0f} ms",
                  "first key; first invocations of the process")
        self.pair("Lambda CPU time per rotation", lambda i: i.cpu, ms, "utime+stime, /proc/<pid>/stat")
        for impl in self.impls:
            if impl.name == "Rust":
                self.t.add("for scale: Python smtplib login", ms(self.smtplib_login), "", "",
                           "one STARTTLS + AUTH against the emulator, median of 5")

        self.t.section(f"5. Memory (Lambda MemorySize {LAMBDA_MIB} MiB)")
        self.pair("RSS at first poll (idle after init)", lambda i: i.idle_rss, mib, "VmHWM")
        r, p = self.pair(f"peak RSS over {k + 1} rotations", lambda i: i.peak_rss or None, mib)
        self.t.rows[-1] = self.t.rows[-1][:4] + (
            f"VmHWM; target ratio ≥ {TARGET_RSS_RATIO}×: {self.met(r, p, TARGET_RSS_RATIO)}",)
        self.pair(f"headroom to {LAMBDA_MIB} MiB", lambda i: (LAMBDA_MIB * 2**20 - i.peak_rss) if i.peak_rss else None,
                  mib)
        self.t.rows[-1] = self.t.rows[-1][:3] + ("", "")

        self.t.section("6. AWS calls per rotation, counted at the stand-in (median (min–max))")
        for step in STEPS + ["all four steps"]:
            def per(i: Impl, s: str = step) -> Stat | None:
                if not i.calls:
                    return None
                if s in STEPS:
                    return Stat([sum(c.values()) for c in i.calls[s]])
                return Stat([sum(sum(i.calls[x][j].values()) for x in STEPS) for j in range(len(i.calls[STEPS[0]]))])
            self.pair(step, per, count)

        if self.args.propagation:
            self.t.section("7. Propagation: SES emulator accepts a key `delay` s after its creation")
            for delay, runs in parse_propagation(self.args.propagation):
                label = f"delay {delay:g} s ({runs} rotation{'s' if runs > 1 else ''})"
                self.pair(f"{label}: usable -> 235", lambda i, d=delay: Stat([x["waste_login"] for x in i.propagation[d]])
                          if d in i.propagation else None, secs,
                          f"target ≤ {TARGET_WASTE_S:g} s median waste")
                self.pair("  usable -> testSecret answered", lambda i, d=delay: Stat([x["waste_answer"] for x in i.propagation[d]])
                          if d in i.propagation else None, secs)
                self.pair("  AUTH attempts to the 235", lambda i, d=delay: Stat([x["attempts"] for x in i.propagation[d]])
                          if d in i.propagation else None, count,
                          "Python's smtplib login() tries PLAIN, then LOGIN, after a 535")
                self.pair("  AUTH attempts per second", lambda i, d=delay: Stat([x["rate"] for x in i.propagation[d]])
                          if d in i.propagation else None, lambda x: f"{x:.2f}/s",
                          f"(attempts − 1) ÷ (235 − first attempt); target ≤ {TARGET_AUTH_RATE:g}/s")

    def print_calls(self) -> None:
        print("\nAWS calls per step (the last timed rotation):")
        for impl in self.impls:
            if not impl.calls:
                continue
            for step in STEPS:
                c = impl.calls[step][-1]
                text = ", ".join(f"{a}{f' ×{k}' if k > 1 else ''}" for a, k in c.items()) or "none"
                print(f"  {impl.name:6} {step:12} {sum(c.values()):2}: {text}")

    def run(self) -> None:
        self.package()
        if self.impl("Rust"):
            self.cli()
        self.start_standin()
        for impl in self.impls:
            self.cold_start(impl)
            self.cold_start(impl, system_roots=False)
            self.cold_answer(impl)
        self.smtplib_login = 0.0
        for impl in self.impls:
            self.rotations(impl)
        self.maintenance()
        self.report_login()
        self.report()
        self.report_maintenance()

    def maintenance(self) -> None:
        """The scheduled maintenance's cost per managed secret (shared scope, as a fleet runs it):
        once when every secret has a replaced key past its grace to retire, once in the steady
        state (nothing to retire; the canary's login only)."""
        impl = self.impl("Rust")
        if impl is None or self.args.maintenance_secrets <= 0:
            return
        n = self.args.maintenance_secrets
        path = "/ses-smtp/"
        self.admin("POST", "/policy", {"label": "shared", "variant": "shared",
                                       "parameters": {"Scope": "shared", "SmtpIamUserPath": path}})
        log = "maintenance-Rust.log"
        env = self.lambda_env(ROTATION_SCOPE="shared", IAM_USER_PATH=path,
                              OLD_KEY_GRACE_HOURS="0.0003", OLD_KEY_MAX_GRACE_HOURS="0.0003")
        p = self.spawn_lambda(impl, env, log)
        try:
            arns = []
            for i in range(n):
                user = f"bench-fleet-{i}"
                self.iam.create_user(UserName=user, Path=path)
                doc = {"iam_user": user, "host": "localhost", "port": self.ready["smtp_starttls_port"],
                       "tls": "starttls", "region": self.ready["region"]}
                arn = self.sm.create_secret(Name=f"bench/fleet-{i}", SecretString=json.dumps(doc),
                                            Tags=[{"Key": "ses-smtp-rotator:managed", "Value": "true"}])["ARN"]
                self.iam.tag_user(UserName=user, Tags=[{"Key": "ses-smtp-rotator:secret", "Value": arn}])
                self.admin("POST", "/secret/rotation", {"secret_id": arn, "enabled": True})
                for _ in range(2):
                    self.rotate(impl, p, arn, log)
                arns.append(arn)
            time.sleep(1.5)  # every replaced key is past its grace
            self.maintenance_runs = []
            for label in ("retiring one replaced key each", "steady state (nothing to retire)"):
                start = time.time()
                t0 = time.perf_counter()
                res = self.admin("POST", "/invoke", {"event": {"Action": "maintenance"}, "deadline_seconds": 120})
                wall = (time.perf_counter() - t0) * 1000
                end = time.time()
                if not res.get("ok") or res["response"]["secrets"] != n or res["response"]["failed"]:
                    raise RuntimeError(f"the maintenance failed: {res}; the Lambda's log:\n" + self.log_tail(log))
                calls = collections.Counter(r.get("action") or "?" for r in self.admin("GET", "/requests")
                                            if start <= r["time"] < end)
                self.maintenance_runs.append((label, wall, calls, res["response"]))
        finally:
            stop(p)

    def report_maintenance(self) -> None:
        runs = getattr(self, "maintenance_runs", [])
        if not runs:
            return
        n = self.args.maintenance_secrets
        self.t.section(f"8. Scheduled maintenance, shared scope, {n} managed secrets in one invocation")
        for label, wall, calls, _ in runs:
            total = sum(calls.values())
            self.t.add(f"{label}: wall time per secret", ms(wall / n), "", "",
                       f"whole invocation {ms(wall)}, incl. one SMTP login per secret (the canary)")
            self.t.add("  AWS calls per secret", f"{total / n:.1f}", "", "",
                       ", ".join(f"{a} ×{k}" for a, k in sorted(calls.items())))

    def report_login(self) -> None:
        """For scale: a plain smtplib STARTTLS + AUTH against the emulator, with a key of our own."""
        self.iam.create_user(UserName="bench-scale")
        key = self.iam.create_access_key(UserName="bench-scale")["AccessKey"]
        pw = reference_password(key["SecretAccessKey"], self.ready["region"])
        ctx = ssl.create_default_context(cafile=self.ready["ca_file"])
        logins = []
        for _ in range(5):
            t0 = time.perf_counter()
            with smtplib.SMTP("localhost", self.ready["smtp_starttls_port"], timeout=10) as s:
                s.starttls(context=ctx)
                s.login(key["AccessKeyId"], pw)
            logins.append((time.perf_counter() - t0) * 1000)
        self.smtplib_login = statistics.median(logins)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=str(ROOT / "target/lambda-host/bootstrap"))
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter for the Python rotator (needs boto3; default: this one)")
    ap.add_argument("--impls", default="rust,python", help="rust,python (default), rust or python")
    ap.add_argument("--cli-runs", type=int, default=200, help="smtp-password runs (default 200)")
    ap.add_argument("--cold-starts", type=int, default=10, help="spawns per cold-start figure (default 10)")
    ap.add_argument("--rotations", type=int, default=10, help="timed rotations after the bootstrap (default 10)")
    ap.add_argument("--propagation", default="1:3,5:3,15:1",
                    help="propagation delays and rotations each, DELAY:N,... ('' to skip; default 1:3,5:3,15:1)")
    ap.add_argument("--maintenance-secrets", type=int, default=10,
                    help="managed secrets for the maintenance figure (default 10; 0 to skip)")
    ap.add_argument("--lambda-zip", action="append", default=[],
                    help="a Lambda zip made by make bench-package (deploy/build-lambda.sh) to report; repeatable")
    args = ap.parse_args()
    if "rust" in args.impls.split(",") and not os.access(args.bin, os.X_OK):
        print(f"no binary at {args.bin}: run `make lambda-bin` (deploy/build-lambda.sh --arch host) first", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the children
    t0 = time.monotonic()
    bench = Bench(args)
    try:
        bench.run()
    except Exception as e:  # a failure is reported plainly, after the processes are stopped
        print(f"\nbench FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        bench.cleanup()
    print()
    bench.t.print()
    bench.print_calls()
    print(f"\n({time.monotonic() - t0:.0f} s; {os.cpu_count()} CPUs; all figures are wall-clock on "
          "127.0.0.1 and include the Python stand-in's own latency where it is in the path)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
