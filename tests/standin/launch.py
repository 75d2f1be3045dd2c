"""Start the stand-in from a Python script (make demo, make bench) and read its ready line.

Tests in Rust have their own launcher (tests/common/mod.rs); this is the Python one (demo,
bench and the stand-in's own tests), so that scripts do not each copy the start-up dance.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

STANDIN = Path(__file__).resolve().parent / "standin.py"


def start_standin(log_path: Path, timeout: float = 60,
                  extra_args: Sequence[str] = ()) -> tuple[subprocess.Popen, dict[str, Any]]:
    """Starts standin.py with ``extra_args`` (e.g. ``["--smtp-regions", "us-east-1,eu-west-1"]``;
    stderr to ``log_path``, stdin kept as a pipe: closing it stops the stand-in) and returns
    the process and its parsed ready line."""
    with open(log_path, "wb") as err:  # the child keeps its own handle
        proc = subprocess.Popen([sys.executable, str(STANDIN), *extra_args], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else b""
    if not line:
        proc.kill()
        raise RuntimeError("the stand-in did not start; the end of its log:\n"
                           + log_path.read_text(errors="replace")[-2000:])
    return proc, json.loads(line)


def stop_standin(proc: subprocess.Popen) -> None:
    """Stops a stand-in the clean way (closing its stdin lets it remove its temp dir), killing
    it only if it does not exit within 10 s."""
    if proc.stdin:
        proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout:
        proc.stdout.close()
