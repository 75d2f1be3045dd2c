#!/usr/bin/env python3
"""`make demo`: a complete SES SMTP credential rotation, run locally and shown step by step.

Starts the local AWS stand-in (tests/standin/standin.py: moto for Secrets Manager + IAM, an
SES SMTP emulator with real TLS, a Lambda Runtime API and a Secrets-Manager-like rotation
orchestrator) and the real Lambda binary (make demo: the deployed static build) as the Lambda, then:

1. bootstrap rotation of a secret that names only the IAM user and the SMTP endpoint;
2. proof: the new credentials log in (the binary's own `test-login` CLI, 235);
3. a regular rotation (new key, the old one deactivated);
4. proof: the new credentials log in, the previous ones are refused (535);
5. an excerpt of the Lambda's log, and a check that no password or secret ever appears in it.

Exits 0 only if all of that behaved as expected. Nothing touches real AWS.

    .venv/bin/python tests/demo.py --bin target/lambda-host/bootstrap
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import boto3

USER, SECRET_NAME, APP = "ses-smtp-demo", "demo/ses-smtp", "billing-mailer"
# The old key's grace and its longest extension while still in use, in seconds (hours in
# production: OLD_KEY_GRACE_HOURS=24, OLD_KEY_MAX_GRACE_HOURS=72).
GRACE_S, MAX_GRACE_S = 3.0, 6.0
sys.path.insert(0, str(Path(__file__).resolve().parent / "standin"))
from launch import start_standin, stop_standin  # noqa: E402
TTY = sys.stdout.isatty()
GOOD = "\033[32m✓\033[0m" if TTY else "✓"
BAD = "\033[31m✗\033[0m" if TTY else "✗"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
INVOKE_SPAN = re.compile(r"Lambda runtime invoke\{[^}]*\}:")
problems: list[str] = []


def check(ok: bool, what: str) -> bool:
    print(f"  {GOOD if ok else BAD} {what}")
    if not ok:
        problems.append(what)
    return ok


def heading(title: str) -> None:
    print(f"\n{'=' * 78}\n{title}\n{'=' * 78}")


def table(headers: list[str], rows: list[list[object]], indent: str = "  ") -> None:
    if not rows:
        print(f"{indent}(none)")
        return
    cells = [[str(c) for c in r] for r in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, r in enumerate(cells):
        print(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if n == 0:
            print(indent + "  ".join("-" * w for w in widths))


def fmt_time(t: object) -> str:
    try:
        return dt.datetime.fromtimestamp(float(t), dt.timezone.utc).strftime("%H:%M:%S.%f")[:-3] + " UTC"
    except (TypeError, ValueError):
        return str(t)


class Demo:
    def __init__(self, bin_path: str):
        self.bin = str(Path(bin_path).resolve())
        self.tmp = Path(tempfile.mkdtemp(prefix="ses-smtp-demo-"))
        self.standin: subprocess.Popen | None = None
        self.lambda_proc: subprocess.Popen | None = None
        self.lambda_log = self.tmp / "lambda.log"

    # --- plumbing ---------------------------------------------------------------------------
    def start(self) -> None:
        self.standin, self.ready = start_standin(self.tmp / "standin.log", timeout=30)
        # The grace is hours in production (24 by default); a few seconds here.
        env = {**self.ready["lambda_env"], "OLD_KEY_ACTION": "deactivate",
               "OLD_KEY_GRACE_HOURS": str(GRACE_S / 3600), "OLD_KEY_MAX_GRACE_HOURS": str(MAX_GRACE_S / 3600),
               "SMTP_TEST_TIMEOUT_SECONDS": "20", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        with open(self.lambda_log, "wb") as out:
            self.lambda_proc = subprocess.Popen([self.bin], env=env, stdin=subprocess.DEVNULL,
                                                stdout=out, stderr=subprocess.STDOUT)
        kw = dict(endpoint_url=self.ready["endpoint"], region_name=self.ready["region"],
                  aws_access_key_id="test", aws_secret_access_key="test")
        self.iam, self.sm = boto3.client("iam", **kw), boto3.client("secretsmanager", **kw)
        # Give the runtime loop a moment; a binary that fails its start-up checks exits at once.
        t_end = time.monotonic() + 3
        while time.monotonic() < t_end and "ready" not in self.lambda_log.read_text(errors="replace"):
            self.alive()
            time.sleep(0.05)

    def alive(self) -> None:
        if self.lambda_proc.poll() is not None:
            raise RuntimeError(f"the Lambda binary exited (status {self.lambda_proc.returncode})")

    def stop(self) -> None:
        if self.lambda_proc and self.lambda_proc.poll() is None:
            self.lambda_proc.kill()
            self.lambda_proc.wait()
        if self.standin is not None:
            stop_standin(self.standin)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def admin(self, method: str, path: str, body: dict | None = None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.ready["admin"] + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())

    def secret_doc(self, stage: str = "AWSCURRENT") -> dict:
        return json.loads(self.sm.get_secret_value(SecretId=self.arn, VersionStage=stage)["SecretString"])

    # --- what is shown ------------------------------------------------------------------------
    def show_keys(self, title: str) -> list[dict]:
        keys = self.admin("GET", f"/keys?user={USER}")
        print(f"\n{title}")
        table(["access key id", "status", "age"],
              [[k["access_key_id"], k["status"], f"{k['age_seconds']:.1f} s"] for k in keys])
        return keys

    def show_document(self, doc: dict) -> None:
        print("\nAWSCURRENT secret document:")
        width = max(len(k) for k in doc)
        for k, v in doc.items():
            shown = f"<{len(v)} chars, hidden>" if k == "password" else json.dumps(v)
            print(f"  {k.ljust(width)} : {shown}")

    def show_versions(self) -> None:
        q = urllib.parse.urlencode({"secret_id": self.arn})
        self.versions = self.admin("GET", f"/versions?{q}")
        print("\nSecret versions:")
        table(["version id", "stages", "has value", "created"],
              [[v["version_id"], ",".join(v["stages"]) or "-", "yes" if v["has_value"] else "no",
                fmt_time(v["created_date"])] for v in self.versions])
        check(not any("AWSPENDING" in v["stages"] for v in self.versions), "no version is left AWSPENDING")

    def rotate(self) -> bool:
        print(f'\nPOST /rotate {{"secret_id": "{self.arn}"}}')
        self.alive()
        t0 = time.monotonic()
        res = self.admin("POST", "/rotate", {"secret_id": self.arn, "deadline_seconds": 30})
        self.token = res.get("token")
        rows = []
        for s in res.get("steps", []):
            text = ((s.get("response") or {}).get("result", "") if s["ok"]
                    else f"{s.get('error_type')}: {s.get('error_message')}")
            rows.append([s["step"], GOOD if s["ok"] else BAD, f"{s['duration_ms']} ms", text])
        table(["step", "ok", "took", "result"], rows)
        if not res.get("steps"):
            print(f"  rotation did not start: {res.get('error_type')}: {res.get('error_message')}")
        print(f"  (whole rotation {time.monotonic() - t0:.2f} s, token {res.get('token')})")
        return bool(res.get("ok"))

    def maintain(self) -> dict:
        event = {"Action": "maintenance", "SecretIds": [self.arn]}
        print(f"\nPOST /invoke {json.dumps(event)}")
        res = self.admin("POST", "/invoke", {"event": event, "deadline_seconds": 30})
        rep = ((res.get("response") or {}).get("reports") or [{}])[0]
        rows = [[k["key_id"], k["outcome"], fmt_time(k.get("last_used")) if k.get("last_used") else "-"]
                for k in rep.get("old_keys", [])]
        table(["replaced key", "outcome", "IAM last use"], rows or [["-", "-", "-"]])
        print(f"  CurrentLoginOk: {rep.get('current_login_ok')}")
        return rep

    def login(self, doc: dict, label: str) -> tuple[int, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SSL_CERT_FILE": self.ready["ca_file"],
               "SMTP_ALLOWED_HOSTS": "localhost"}
        print(f"\n$ ses-smtp-rotator test-login --timeout 5 < {label}")
        try:
            p = subprocess.run([self.bin, "test-login", "--timeout", "5"], input=json.dumps(doc),
                               env=env, capture_output=True, text=True, timeout=30)
            code, out = p.returncode, (p.stdout + p.stderr).strip()
        except subprocess.TimeoutExpired:
            code, out = -1, "test-login did not finish within 30 s"
        for line in out.splitlines():
            print(f"  | {line}")
        print(f"  exit status {code}")
        return code, out

    # --- the story -------------------------------------------------------------------------------
    def run(self) -> None:
        self.start()
        r = self.ready
        heading("Setup")
        print(f"  stand-in: AWS endpoint {r['endpoint']}, SES SMTP (STARTTLS) on "
              f"127.0.0.1:{r['smtp_starttls_port']}, region {r['region']}")
        self.iam.create_user(UserName=USER)
        bootstrap = {"iam_user": USER, "host": "localhost", "port": r["smtp_starttls_port"],
                     "tls": "starttls", "region": r["region"], "app": APP}
        self.arn = self.sm.create_secret(Name=SECRET_NAME, SecretString=json.dumps(bootstrap))["ARN"]
        self.admin("POST", "/secret/rotation", {"secret_id": self.arn, "enabled": True})
        # The function runs under the role policy template.yaml deploys for this secret and
        # user (Scope=single; the stand-in authorizes each of its AWS requests against it).
        self.admin("POST", "/policy", {"label": "single", "variant": "single",
                                       "parameters": {"SmtpIamUserName": USER, "SmtpIamUserPath": "/"},
                                       "physical": {"SmtpSecret": self.arn}})
        print(f"  IAM user {USER} created; secret {SECRET_NAME} created, rotation enabled")
        print(f"  bootstrap document: {json.dumps(bootstrap)}")

        heading("1. Bootstrap rotation (the secret names only the IAM user and the endpoint)")
        check(not self.show_keys(f"Access keys of {USER} before:"), "the user has no key yet")
        check(self.rotate(), "bootstrap rotation succeeded")
        keys = self.show_keys(f"Access keys of {USER} after:")
        doc1 = self.secret_doc()
        self.show_document(doc1)
        self.show_versions()
        print()
        check([k["status"] for k in keys] == ["Active"], "exactly one key, Active")
        check(doc1.get("username") == (keys[0]["access_key_id"] if keys else None),
              "the secret's username is that key")
        pw = doc1.get("password", "")
        check(len(pw) == 44 and pw.startswith("B"), "the password looks like a SigV4 SMTP password")
        check(doc1.get("app") == APP, "the unknown field 'app' was kept")

        heading("2. Proof: the new credentials log in")
        code, out = self.login(doc1, "AWSCURRENT")
        check(code == 0 and "235" in out, "235 accepted")

        heading("3. Regular rotation")
        check(len(self.show_keys(f"Access keys of {USER} before:")) == 1, "one key before")
        check(self.rotate(), "rotation succeeded")
        keys = self.show_keys(f"Access keys of {USER} after:")
        doc2 = self.secret_doc()
        self.show_document(doc2)
        self.show_versions()
        print()
        status = {k["access_key_id"]: k["status"] for k in keys}
        check(doc2.get("username") not in (None, doc1.get("username")), "a new key is AWSCURRENT")
        check(status.get(doc2.get("username")) == "Active", "the new key is Active")
        check(status.get(doc1.get("username")) == "Active",
              f"the old key stays Active for its grace (OLD_KEY_GRACE_HOURS, {GRACE_S:.1f} s here)")
        check(len(keys) == 2, "two keys in all")
        check(doc2.get("app") == APP, "the unknown field 'app' was kept")
        promoted = time.monotonic()

        heading("4. Proof: the new credentials log in, and a sender with the old ones is not cut off")
        code, out = self.login(doc2, "AWSCURRENT")
        check(code == 0 and "235" in out, "new credentials: 235 accepted")
        prev = self.secret_doc("AWSPREVIOUS")
        check(prev.get("username") == doc1.get("username"), "AWSPREVIOUS holds the old credentials")
        time.sleep(1.1)
        code, out = self.login(prev, "AWSPREVIOUS")
        check(code == 0 and "235" in out, "old credentials, still cached by a sender: 235 accepted (in grace)")

        heading("4b. The scheduled maintenance retires the old key once senders have moved")
        time.sleep(max(0.0, promoted + GRACE_S + 0.5 - time.monotonic()))
        rep = self.maintain()
        check([k["outcome"] for k in rep.get("old_keys", [])] == ["in-use"],
              "after the grace, IAM still sees the old key used: OldKeyStillInUse, kept up to the max grace")
        check(rep.get("current_login_ok") is True, "the canary: AWSCURRENT logs in (CurrentLoginOk=1)")
        time.sleep(max(0.0, promoted + MAX_GRACE_S + 0.5 - time.monotonic()))
        rep = self.maintain()
        check([k["outcome"] for k in rep.get("old_keys", [])] == ["retired-in-use"],
              "past OLD_KEY_MAX_GRACE_HOURS it is retired anyway")
        keys = self.show_keys(f"Access keys of {USER} after the maintenance:")
        status = {k["access_key_id"]: k["status"] for k in keys}
        check(status.get(doc1.get("username")) == "Inactive", "the old key is Inactive (OLD_KEY_ACTION=deactivate)")
        code, out = self.login(prev, "AWSPREVIOUS")
        check(code != 0 and "535" in out, "old credentials: now refused with 535")

        heading("5. What the Lambda logged: the regular rotation's lines naming a step")
        print("  (the lambda_runtime span prefix 'Lambda runtime invoke{requestId=… xrayTraceId=…}:' is cut here)\n")
        log = ANSI.sub("", self.lambda_log.read_text(errors="replace"))
        for line in log.splitlines():
            if "step" in line and self.token in line:
                print("  " + INVOKE_SPAN.sub("", line).strip())
        print()
        secrets = {self.sm.get_secret_value(SecretId=self.arn, VersionId=v["VersionId"])["SecretString"]
                   for v in self.sm.list_secret_version_ids(SecretId=self.arn)["Versions"]}
        values = {json.loads(s).get("password") for s in secrets} | secrets
        values |= {k["secret_access_key"] for k in self.admin("GET", "/secrets-seen")}
        values = {v for v in values if v}
        leaked = [v for v in values if v in log]
        check(not leaked, f"none of {len(values)} secret values (passwords, secret access keys, "
                          f"documents) appears in the Lambda's log")
        check("secret_id" in log and "version" in log, "the log names the secret and the version")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="target/lambda-host/bootstrap", help="the Lambda binary (make lambda-bin)")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        print(f"{BAD} no binary at {args.bin}: run `make lambda-bin` first")
        return 1
    t0 = time.monotonic()
    demo = Demo(args.bin)
    try:
        demo.run()
    except Exception as e:  # a crash is a failed demo, said plainly
        problems.append(f"the demo stopped: {type(e).__name__}: {e}")
        if demo.lambda_log.exists():
            tail = demo.lambda_log.read_text(errors="replace").strip().splitlines()[-15:]
            if tail:
                print("\nlast lines of the Lambda's log:\n  " + "\n  ".join(ANSI.sub("", l) for l in tail))
    finally:
        demo.stop()
    heading(f"Result ({time.monotonic() - t0:.1f} s)")
    if problems:
        print(f"{BAD} the demo FAILED:")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(f"{GOOD} bootstrap and regular rotation done, new credentials accepted, old ones refused, "
          "no secret in the logs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
