#!/usr/bin/env python3
"""Entry script of the local AWS stand-in: ``python tests/standin/standin.py [flags]``.

The stand-in itself is the package ``sesstandin`` next to this file (its docstring describes
the parts, the flags and the ready line; ``sesstandin/admin.py`` lists the admin API). This
script only makes the package importable and runs :func:`sesstandin.cli.main`, so the command
line used by the Rust tests, demo and bench stays the same.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sesstandin.common import ses_smtp_password_v4  # noqa: E402,F401  (kept importable from here)
from sesstandin.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
