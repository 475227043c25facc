"""What the command modules (`commands_catalog`, `commands_publish`, `commands_stub`) share:
the hooks the CLI gives them, and how a command that calls a server runs.

Invariants:
- A command module knows nothing of certificates: it asks the CLI's `Connect` for a channel
  presenting an identity, and adds the CLI's client flags to its parsers (`Hooks`).
- A command that calls a server returns an exit code for every ordinary outcome: done, a
  refusal (`exits.REFUSED`, shown by `Output.refused` with the command's `FlagMap`), or a
  server not reached (`exits.UNREACHABLE`).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import grpc

from gateway.app.config import DEFAULT_PORT
from gateway.tools.output import FlagMap, Output, reached

Connect = Callable[[argparse.Namespace, str, str], AbstractAsyncContextManager[grpc.aio.Channel]]
"""A channel to `args.gateway` presenting the certificate of `role`/`name` (the CLI's rules)."""

GATEWAY_HELP = (
    "the gateway: HOST:PORT, or several replicas' HOST:PORT,... (balanced, UNAVAILABLE retried); "
    f"default 127.0.0.1:{DEFAULT_PORT}"
)


@dataclass(frozen=True)
class Hooks:
    """What the CLI lends its command modules."""

    connect: Connect
    """Opens a channel as an identity."""
    client_flags: Callable[[argparse.ArgumentParser], None]
    """Adds the client TLS flags (`--ca`, `--cert`, `--key`, `--pki-dir`, `--insecure`)."""


def gateway_flags(parser: argparse.ArgumentParser, hooks: Hooks) -> None:
    """`--gateway`, the client TLS flags and `--json`."""
    parser.add_argument("--gateway", default=f"127.0.0.1:{DEFAULT_PORT}", help=GATEWAY_HELP)
    hooks.client_flags(parser)
    json_flag(parser)


def json_flag(parser: argparse.ArgumentParser) -> None:
    """`--json`: the result as JSON on stdout, for scripts."""
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON (for scripts)"
    )


Call = Callable[[argparse.Namespace, Output], Awaitable[int]]


def run_call(
    call: Call, where: Callable[[argparse.Namespace], str], flags: FlagMap
) -> Callable[[argparse.Namespace], int]:
    """The command function of `call`: runs it; a refusal is shown with the command's `flags`,
    a server that was not reached (`where` names it) in one line."""

    def command(args: argparse.Namespace) -> int:
        out = Output(json_mode=args.json)

        async def guarded() -> int:
            try:
                return await call(args, out)
            except grpc.aio.AioRpcError as error:
                if reached(error):
                    return out.refused(error, flags)
                return out.unreachable(error, where(args))

        return asyncio.run(guarded())

    return command


def at_gateway(args: argparse.Namespace) -> str:
    """`where` for a command that calls the gateway."""
    return f"the gateway at {args.gateway}"
