"""`tongban` (and `python -m gateway.tools`): the command's entry point.

gRPC core reads `GRPC_VERBOSITY` once, when gRPC is loaded, and writes its own log lines
(handshake failures, bind errors) straight to stderr. The CLI says what went wrong itself, so
those lines stay off the terminal unless asked for: the user's own `GRPC_VERBOSITY` is kept,
`--log-level debug` shows them all, and otherwise they are off (`NONE`). This module decides
before anything imports gRPC, so it imports nothing of the gateway at its top.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

GRPC_VERBOSITY = "GRPC_VERBOSITY"


def grpc_verbosity(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """gRPC core's log level for the command line `argv`."""
    if env.get(GRPC_VERBOSITY):
        return env[GRPC_VERBOSITY]
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        name, equals, value = arg.partition("=")
        if name == "--log-level":
            level = value if equals else "".join(argv[i + 1 : i + 2])
            return "DEBUG" if level.upper() == "DEBUG" else "NONE"
    return "NONE"


def main() -> int:
    """Runs `tongban` with the process's command line; returns its exit code."""
    os.environ[GRPC_VERBOSITY] = grpc_verbosity(sys.argv[1:], os.environ)
    from gateway.tools.cli import main as cli_main  # noqa: PLC0415 (after the line above)

    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
