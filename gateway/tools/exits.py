"""`tongban`'s exit codes."""

from __future__ import annotations

OK = 0
"""Done."""
FAILED = 1
"""The command ran and failed, or found problems."""
USAGE = 2
"""A wrong flag or value, or a file, directory, port or store it names is unusable (argparse
exits with 2 too)."""
REFUSED = 3
"""The gateway answered with an error status."""
UNREACHABLE = 4
"""The gateway was not reached, or did not answer in time."""
