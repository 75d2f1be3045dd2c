"""The stand-in's command line: parse flags, start every part, print the ready line, then
wait for stdin EOF or a signal and exit after removing the temp dir."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time

from . import __doc__ as PACKAGE_DOC
from .app import Standin

log = logging.getLogger("standin")


def main(argv: list[str] | None = None) -> None:
    prog = "python -m sesstandin" if sys.argv[0].endswith("__main__.py") else None
    ap = argparse.ArgumentParser(prog=prog, description=(PACKAGE_DOC or "").split("\n\n")[0])
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--account", default="123456789012")
    ap.add_argument("--smtp-regions", default="",
                    help="comma-separated SES regions with an SMTP emulator each (default: --region; "
                         "--region is always served)")
    ap.add_argument("--no-stdin-watch", action="store_true",
                    help="do not exit on stdin EOF (manual use; stop with Ctrl-C)")
    ap.add_argument("--verbose", "-v", action="store_true", help="debug logging on stderr")
    args = ap.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="standin %(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiosmtpd logs protocol lines at DEBUG (AUTH lines and LOGIN answers are base64
    # secrets): keep it quiet, even with --verbose.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    os.environ["MOTO_ACCOUNT_ID"] = args.account
    os.environ.setdefault("AWS_DEFAULT_REGION", args.region)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")

    t0 = time.time()
    smtp_regions = [r.strip() for r in args.smtp_regions.split(",") if r.strip()]
    standin = Standin(args.region, args.account, smtp_regions)
    stop = threading.Event()
    exiting = threading.Lock()

    def shutdown(code: int = 0) -> None:
        if not exiting.acquire(blocking=False):
            return
        standin.cleanup()
        try:
            sys.stderr.flush()
        finally:
            os._exit(code)

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        ready = standin.start()
    except BaseException:
        standin.cleanup()
        raise
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    log.info("ready in %.2fs: %s", time.time() - t0, json.dumps({k: v for k, v in ready.items() if k != "lambda_env"}))

    if not args.no_stdin_watch:
        def watch_stdin() -> None:
            try:
                while sys.stdin.buffer.read1(65536):
                    pass
            except Exception:
                pass
            log.info("stdin closed: exiting")
            shutdown(0)

        threading.Thread(target=watch_stdin, name="stdin", daemon=True).start()

    while not stop.wait(1.0):
        pass
    log.info("signal: exiting")
    shutdown(0)
