"""``python -m sesstandin`` (from tests/standin): the same as ``python standin.py``."""

from .cli import main

main()
