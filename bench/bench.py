#!/usr/bin/env python3
"""`make bench`: speed, size and memory figures of the release binary, printed as a table.

Figures, not assertions: nothing here fails because a number is high. It fails (exit 1)
only when something does not work (a rotation fails, the binary does not start, the CLI
prints a wrong password). Everything runs on 127.0.0.1 against the local AWS stand-in
(tests/standin/standin.py); every process started here is stopped before it exits.

    .venv/bin/python bench/bench.py --bin target/release/ses-smtp-rotator

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
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
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "standin"))
from launch import start_standin, stop_standin  # noqa: E402
STEPS = ["createSecret", "setSecret", "testSecret", "finishSecret"]
LAMBDA_MIB = 128  # the function's MemorySize in template.yaml
# The published example secret access key (AWS documentation); not a real credential.
EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CLI_REGION = "us-east-1"
PATH_ENV = os.environ.get("PATH", "/usr/bin:/bin")


# --- small helpers ------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def ms(x: float) -> str:
    return f"{x:.1f} ms" if x < 100 else f"{x:.0f} ms"


def ims(x: float) -> str:
    """Whole milliseconds (the stand-in reports step durations as integers)."""
    return f"{x:.0f} ms"


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f} MiB"


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


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def section(self, title: str) -> None:
        self.rows.append((title, "", ""))

    def add(self, what: str, value: str, note: str = "") -> None:
        self.rows.append(("  " + what, value, note))

    def print(self) -> None:
        w0 = max(len(r[0]) for r in self.rows if r[1])
        w1 = max(len(r[1]) for r in self.rows)
        head = ("figure".ljust(w0), "value".rjust(w1), "note")
        print("  ".join(head))
        print("  ".join(["-" * w0, "-" * w1, "-" * 40]))
        for a, b, c in self.rows:
            if not b:
                print(a)
            else:
                print(f"{a.ljust(w0)}  {b.rjust(w1)}  {c}".rstrip())


# --- the bench ----------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.bin = str(Path(args.bin).resolve())
        self.tmp = Path(tempfile.mkdtemp(prefix="ses-smtp-bench-"))
        self.standin: subprocess.Popen | None = None
        self.procs: list[subprocess.Popen] = []
        self.t = Table()

    # plumbing --------------------------------------------------------------------------------
    def start_standin(self) -> None:
        self.standin, self.ready = start_standin(self.tmp / "standin.log", timeout=60)
        kw = dict(endpoint_url=self.ready["endpoint"], region_name=self.ready["region"],
                  aws_access_key_id="test", aws_secret_access_key="test")
        self.iam, self.sm = boto3.client("iam", **kw), boto3.client("secretsmanager", **kw)

    def lambda_env(self, **extra: str) -> dict[str, str]:
        return {**self.ready["lambda_env"], "SMTP_TEST_TIMEOUT_SECONDS": "20", "PATH": PATH_ENV, **extra}

    def spawn_lambda(self, env: dict[str, str], log_name: str) -> subprocess.Popen:
        with open(self.tmp / log_name, "wb") as out:
            p = subprocess.Popen([self.bin], env=env, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def log_tail(self, log_name: str) -> str:
        path = self.tmp / log_name
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""

    def admin(self, method: str, path: str, body: dict | None = None, timeout: float = 120) -> dict:
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

    # 1. size ----------------------------------------------------------------------------------
    def size(self) -> None:
        self.t.section("1. Release binary")
        n = os.stat(self.bin).st_size
        self.t.add("size on disk", f"{n:,} B", f"{mib(n)}; {os.path.relpath(self.bin, ROOT)}")

    # 2. CLI derivation -----------------------------------------------------------------------
    def cli(self) -> None:
        n = self.args.cli_runs
        self.t.section(f"2. CLI `smtp-password --region {CLI_REGION}` (process start + derivation, {n} runs)")
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
        self.t.add("wall time, median", ms(statistics.median(times)), "spawn to exit, from Python")
        self.t.add("wall time, p95", ms(pct(times, 95)))
        self.t.add("wall time, min", ms(min(times)), "the password was checked on every run")
        base = []
        for _ in range(n // 4):
            t0 = time.perf_counter()
            subprocess.run(["true"], env=env, capture_output=True, timeout=30)
            base.append((time.perf_counter() - t0) * 1000)
        self.t.add("for scale: `true`, median", ms(statistics.median(base)),
                   "the same spawn from Python of a do-nothing program")

    # 3. cold start ---------------------------------------------------------------------------
    def cold_start_first_poll(self) -> None:
        """Spawn → first GET /invocation/next, against a bare listener of our own."""
        n = self.args.cold_starts
        self.t.section(f"3. Lambda cold start ({n} spawns each)")
        firsts, rss = [], []
        for i in range(n):
            srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                srv.bind(("127.0.0.1", 0))
                srv.listen(1)
                srv.settimeout(10)
                env = self.lambda_env(AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{srv.getsockname()[1]}")
                log = f"cold-{i}.log"
                t0 = time.perf_counter()
                p = self.spawn_lambda(env, log)
                try:
                    conn, _ = srv.accept()
                except socket.timeout:
                    raise RuntimeError("the binary never polled the Runtime API within 10 s; its log:\n"
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
                        raise RuntimeError(f"the first Runtime API request was {line!r}")
                    firsts.append((t1 - t0) * 1000)
                    rss.append(proc_status(p.pid)["VmHWM"])
                    stop(p)
            finally:
                srv.close()
        self.t.add("spawn -> first GET /invocation/next, median", ms(statistics.median(firsts)),
                   "init: config, tracing, AWS clients")
        self.t.add("spawn -> first GET /invocation/next, max", ms(max(firsts)))
        self.idle_rss = statistics.median(rss)

    def cold_start_first_response(self) -> None:
        """Spawn → first invocation answered (a malformed event the binary rejects at once)."""
        times, errs = [], set()
        for i in range(self.args.cold_starts):
            log = f"first-{i}.log"
            t0 = time.perf_counter()
            p = self.spawn_lambda(self.lambda_env(), log)
            res = self.admin("POST", "/invoke", {"event": {"Step": "nope"}, "deadline_seconds": 10}, timeout=30)
            times.append((time.perf_counter() - t0) * 1000)
            stop(p)
            if res.get("ok") or str(res.get("error_type", "")).startswith("Sandbox") \
                    or res.get("init_error"):
                raise RuntimeError(f"the malformed event was not rejected by the binary: {res}; its log:\n"
                                   + self.log_tail(log))
            errs.add(res.get("error_type"))
        self.t.add("spawn -> first invocation answered, median", ms(statistics.median(times)),
                   f"event {{\"Step\": \"nope\"}} via the stand-in, rejected as {'/'.join(sorted(errs))}")
        self.t.add("spawn -> first invocation answered, max", ms(max(times)))

    # 4 + 5. rotations and memory -------------------------------------------------------------
    def rotations(self) -> None:
        n = self.args.rotations
        r = self.ready
        log = "rotation.log"
        p = self.spawn_lambda(self.lambda_env(), log)
        self.iam.create_user(UserName="bench")
        doc = {"iam_user": "bench", "host": "localhost", "port": r["smtp_starttls_port"],
               "tls": "starttls", "region": r["region"]}
        arn = self.sm.create_secret(Name="bench/ses-smtp", SecretString=json.dumps(doc))["ARN"]
        self.admin("POST", "/secret/rotation", {"secret_id": arn, "enabled": True})

        def rotate() -> tuple[dict, float]:
            if p.poll() is not None:
                raise RuntimeError(f"the Lambda binary exited ({p.returncode}); its log:\n" + self.log_tail(log))
            t0 = time.perf_counter()
            res = self.admin("POST", "/rotate", {"secret_id": arn, "deadline_seconds": 60})
            wall = (time.perf_counter() - t0) * 1000
            if not res.get("ok") or [s["step"] for s in res["steps"]] != STEPS:
                bad = [s for s in res.get("steps", []) if not s["ok"]]
                raise RuntimeError(f"a rotation failed: {bad or res}; the Lambda's log:\n" + self.log_tail(log))
            return {s["step"]: s["duration_ms"] for s in res["steps"]}, wall

        boot, boot_wall = rotate()
        cpu0 = cpu_seconds(p.pid)
        runs = [rotate() for _ in range(n)]
        cpu = (cpu_seconds(p.pid) - cpu0) / n * 1000
        mem = proc_status(p.pid)  # read before the process is stopped
        stop(p)

        self.t.section(f"4. Rotation through the real binary (median of {n} after one bootstrap rotation)")
        for step in STEPS:
            vals = [d[step] for d, _ in runs]
            self.t.add(step, ims(statistics.median(vals)), f"min {ims(min(vals))}, max {ims(max(vals))}")
        totals = [sum(d.values()) for d, _ in runs]
        walls = [w for _, w in runs]
        self.t.add("total of the four steps", ims(statistics.median(totals)),
                   f"min {ims(min(totals))}, max {ims(max(totals))}")
        self.t.add("whole POST /rotate", ms(statistics.median(walls)), "incl. the stand-in's AWSPENDING set-up")
        self.t.add("bootstrap rotation (first), total", ims(sum(boot.values())),
                   "first key; first invocations of this process")
        self.t.add("Lambda CPU time per rotation", ms(cpu), "utime+stime of the binary, /proc/<pid>/stat")
        cur = json.loads(self.sm.get_secret_value(SecretId=arn)["SecretString"])
        ctx = ssl.create_default_context(cafile=r["ca_file"])
        logins = []
        for _ in range(5):
            t0 = time.perf_counter()
            with smtplib.SMTP("localhost", r["smtp_starttls_port"], timeout=10) as s:
                s.starttls(context=ctx)
                s.login(cur["username"], cur["password"])
            logins.append((time.perf_counter() - t0) * 1000)
        self.t.add("for scale: Python smtplib login, median", ms(statistics.median(logins)),
                   "STARTTLS + AUTH against the SMTP emulator, as testSecret does")

        self.t.section("5. Memory of the Lambda process (Lambda MemorySize 128 MiB)")
        self.t.add("RSS at first poll (idle after init)", mib(self.idle_rss), "VmHWM, median of the cold starts")
        self.t.add(f"peak RSS over {n + 1} rotations", mib(mem["VmHWM"]), "VmHWM from /proc/<pid>/status")
        self.t.add("headroom to 128 MiB", mib(LAMBDA_MIB * 2**20 - mem["VmHWM"]),
                   f"{100 * mem['VmHWM'] / (LAMBDA_MIB * 2**20):.0f}% of the limit used")

    def run(self) -> None:
        self.size()
        self.cli()
        self.start_standin()
        self.cold_start_first_poll()
        self.cold_start_first_response()
        self.rotations()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=str(ROOT / "target/release/ses-smtp-rotator"))
    ap.add_argument("--cli-runs", type=int, default=200, help="smtp-password runs (default 200)")
    ap.add_argument("--cold-starts", type=int, default=20, help="spawns per cold-start figure (default 20)")
    ap.add_argument("--rotations", type=int, default=10, help="timed rotations after the bootstrap (default 10)")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        print(f"no binary at {args.bin}: run `make build` (cargo build --release --locked) first", file=sys.stderr)
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
    print(f"\n({time.monotonic() - t0:.1f} s; {os.cpu_count()} CPUs; all figures are wall-clock on "
          "127.0.0.1 and include the Python stand-in's own latency where it is in the path)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
