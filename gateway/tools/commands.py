"""What the command modules (`commands_catalog`, `commands_publish`, `commands_stub`) share
with `tools.cli`: the hooks the CLI lends them, how a subcommand is declared, and how one that
calls a server runs.

Invariants:
- A command module knows nothing of certificates or the environment: it asks the CLI's
  `Connect` for a channel presenting an identity (checked, never plaintext unless asked; see
  `tools.connect`), adds the CLI's client flags, and reads the environment the CLI hands it
  (`Hooks.env`, for `tools.locate`).
- Failures leave a command the one way every command's do (`tools.exits`): a refusal by the
  server is shown by `cli.main` through `Output.refused`, with the command's map from request
  fields to its flags (`args.flags`, set with its parser's defaults or by the command itself).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from gateway.app.config import DEFAULT_PORT
from gateway.tools.output import Output

GATEWAY_HELP = "HOST:PORT, or several replicas' HOST:PORT,... (balanced, UNAVAILABLE retried)"


class Connect(Protocol):
    """A channel to `args.gateway` presenting the certificate of `role`/`name`; `chosen_by`
    names the flag that chose the identity, for the message when there is no such certificate."""

    def __call__(
        self, args: argparse.Namespace, role: str, name: str, *, chosen_by: str
    ) -> AbstractAsyncContextManager[grpc.aio.Channel]: ...


@dataclass(frozen=True)
class Hooks:
    """What the CLI lends its command modules."""

    connect: Connect
    """Opens a channel as an identity."""
    client_flags: Callable[[argparse.ArgumentParser], None]
    """Adds the client TLS flags (`--ca`, `--cert`, `--key`, `--pki-dir`, `--insecure`)."""
    env: Mapping[str, str]
    """The process's environment, read by `tools.locate` only."""


def command(
    group: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    example: str,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with an example."""
    return group.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )


def gateway_flags(parser: argparse.ArgumentParser, hooks: Hooks) -> None:
    """`--gateway`, the client TLS flags and `--json`."""
    parser.add_argument(
        "--gateway",
        default=f"127.0.0.1:{DEFAULT_PORT}",
        help=f"{GATEWAY_HELP} (default: %(default)s)",
    )
    hooks.client_flags(parser)
    json_flag(parser)


def json_flag(parser: argparse.ArgumentParser) -> None:
    """`--json`: the result as JSON on stdout, for scripts."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


Call = Callable[[argparse.Namespace, Output], Coroutine[Any, Any, int]]


def run_call(call: Call) -> Callable[[argparse.Namespace], int]:
    """The command function of an asynchronous `call`, writing where `--json` says."""

    def run(args: argparse.Namespace) -> int:
        return asyncio.run(call(args, Output(json_mode=args.json)))

    return run
