"""`tongban`'s exit codes, and the one map from what went wrong to a code and what to say.

Every ordinary mistake or failure ends as `tongban: …` on stderr, saying what is wrong and what
to do, in one line (a gateway's refusal prints its status; a validation error adds a line per
field), and one of the codes below. Only a bug shows a traceback.
"""

from __future__ import annotations

import grpc

from gateway.errors import TongbanError
from gateway.tools.federation import DidNotStart

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

EXIT_CODES_HELP = f"""\
exit codes:
  {OK}  done
  {FAILED}  failed, or found problems (an invalid catalog, a broken audit chain, a refused
     overwrite)
  {USAGE}  usage: a wrong flag or value, or a file, directory, port or store it names is
     unusable (a missing file, a certificate that does not fit, a taken port)
  {REFUSED}  refused by the gateway: it answered with an error status (printed on stderr)
  {UNREACHABLE}  the gateway was not reached or did not answer: nothing listening, a TLS
     handshake that failed, no answer before the deadline"""


class CommandError(Exception):
    """An ordinary mistake or failure: one line saying what is wrong and what to do."""

    def __init__(self, message: str, *, code: int = USAGE) -> None:
        super().__init__(message)
        self.message = message
        """The line, without the `tongban: ` prefix."""
        self.code = code
        """The exit code."""


class Refused(Exception):
    """The gateway answered a call with an error status."""

    def __init__(self, error: grpc.aio.AioRpcError) -> None:
        super().__init__(error.details())
        self.rpc_error = error
        """The failed call, status details included."""


def exit_code(error: BaseException) -> int | None:
    """The exit code of `error`; None for what is not an ordinary failure (a bug)."""
    match error:
        case CommandError():
            return error.code
        case Refused():
            return REFUSED
        case DidNotStart():
            return FAILED
        case TongbanError() | FileNotFoundError() | IsADirectoryError() | NotADirectoryError():
            return USAGE
        case PermissionError():
            return USAGE
        case OSError():
            return FAILED
    return None


def explain(error: BaseException) -> list[str]:
    """What to print on stderr for `error` (anything but `Refused`, whose status is printed)."""
    match error:
        case CommandError():
            return [f"tongban: {error.message}"]
        case DidNotStart():
            return [f"tongban: {error.name} exited before listening: {error.last_words}"]
        case TongbanError():
            return [f"tongban: {error.reason}: {error.message}"] + [
                f"  {v.field}: {v.reason}: {v.description}" for v in error.field_violations
            ]
        case FileNotFoundError():
            return [f"tongban: no such file or directory: {error.filename}"]
        case IsADirectoryError():
            return [f"tongban: a file was expected, not the directory {error.filename}"]
        case NotADirectoryError():
            return [f"tongban: {error.filename}: a part of this path is a file, not a directory"]
        case PermissionError():
            return [f"tongban: not allowed to open {error.filename}: check its permissions"]
        case OSError():
            where = f" ({error.filename})" if error.filename else ""
            return [f"tongban: {error.strerror or error}{where}"]
    return [f"tongban: {error}"]
