"""Playing a province: `tongban stub decide` makes a region stub decide a case, as a clerk of
that province would, through the stub's admin service (`RegionAdminService.DecideCase`); the
stub reports the decision to the gateway, which moves the application on.

The stub is found by `--stub`, else in the `federation.json` of the running `tongban up` whose
data directory is `--data-dir` (`tools.locate`'s data directory by default); the call presents
the operator's certificate of that federation's PKI (plaintext when the federation runs
without one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.api.v1 import application_pb2
from gateway.security.pki import DEV_OPS
from gateway.tools import exits, locate
from gateway.tools.commands import Connect, Hooks, command, json_flag, run_call
from gateway.tools.commands_apply import state_name
from gateway.tools.exits import CommandError
from gateway.tools.local_files import FEDERATION_FILE, read_federation
from gateway.tools.output import FlagMap, Output
from region_stubs.admin.v1 import admin_pb2, admin_pb2_grpc

DECISIONS = {
    "accept": application_pb2.APPLICATION_STATE_ACCEPTED,
    "reject": application_pb2.APPLICATION_STATE_REJECTED,
    "complete": application_pb2.APPLICATION_STATE_COMPLETED,
}
FLAGS = FlagMap({"application_id": "APPLICATION_ID", "state": "DECISION", "reason": "--reason"})


async def _decide(args: argparse.Namespace, out: Output) -> int:
    if not args.stub:
        data_dir = Path(args.data_dir or locate.data_dir(args.hooks.env))
        federation = read_federation(data_dir) or {}
        regions = federation.get("regions", {})
        args.stub = regions.get(args.region) if isinstance(regions, dict) else None
        if not args.stub:
            where = data_dir / FEDERATION_FILE
            raise CommandError(
                f"no region stub of {args.region} known: "
                + (
                    f"the federation in {where} has {', '.join(sorted(regions)) or 'none'}"
                    if federation
                    else f"no `tongban up` runs with data directory {data_dir} (no {where})"
                )
                + "; give --stub HOST:PORT or --data-dir"
            )
        if not (args.cert or args.key or args.ca):  # the federation's own PKI, or plaintext
            args.pki_dir = federation.get("pki") or args.pki_dir
            args.insecure = args.insecure or federation.get("pki") is None
    args.gateway = args.stub  # the address the channel goes to
    request = admin_pb2.DecideCaseRequest(
        application_id=args.application_id,
        state=DECISIONS[args.decision],
        reason=args.reason or "",
    )
    connect: Connect = args.hooks.connect
    async with connect(args, "ops", DEV_OPS, chosen_by="the federation's operator") as channel:
        answer = await admin_pb2_grpc.RegionAdminServiceStub(channel).DecideCase(
            request, timeout=30
        )
    if out.json_mode:
        out.message(answer)
        return exits.OK
    out.line(
        f"{args.region} decided application {args.application_id}: "
        f"{state_name(request.state)}; the gateway now has it as {state_name(answer.gateway_state)}"
    )
    return exits.OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], hooks: Hooks) -> None:
    """Adds `stub decide`."""
    stub = command(
        sub,
        "stub",
        "act as a province through its region stub",
        "tongban stub decide --region 510000 APPLICATION_ID accept",
    )
    ssub = stub.add_subparsers(dest="stub_command", required=True)
    decide = command(
        ssub,
        "decide",
        "make a province's region stub accept, reject or complete a case delivered to it; the "
        "stub reports the decision to the gateway",
        "tongban stub decide --region 510000 0193c6d2-7f3c-7d0a-9a51-3b2f4c1e8d21 accept "
        "--reason 材料齐全",
    )
    decide.add_argument("application_id", metavar="APPLICATION_ID", help="the gateway's id")
    decide.add_argument(
        "decision", metavar="DECISION", choices=sorted(DECISIONS), help="accept, reject or complete"
    )
    decide.add_argument("--region", required=True, help="the province whose stub decides")
    decide.add_argument("--reason", help="the reason given to the applicant")
    decide.add_argument(
        "--stub", metavar="HOST:PORT", help="the stub's address (default: from --data-dir)"
    )
    decide.add_argument(
        "--data-dir",
        help=f"data directory of the running `tongban up` (default: ${locate.DATA_DIR_ENV}, "
        "else data)",
    )
    hooks.client_flags(decide)
    json_flag(decide)
    decide.set_defaults(func=run_call(_decide), flags=FLAGS, hooks=hooks)
