"""Playing a province: `tongban stub decide` makes a region stub decide a case, as a clerk of
that province would, through the stub's admin service (`RegionAdminService.DecideCase`); the
stub reports the decision to the gateway, which moves the application on.

The stub is found by `--stub`, else in the `federation.json` of the running `tongban up` whose
data directory is `--data-dir`; the call presents the operator's certificate of that
federation's PKI (plaintext when the federation runs without one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.api.v1 import application_pb2
from gateway.security.pki import DEV_OPS
from gateway.tools import exits
from gateway.tools.commands import Hooks, json_flag, run_call
from gateway.tools.commands_apply import state_name
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
        federation = read_federation(Path(args.data_dir)) or {}
        regions = federation.get("regions", {})
        args.stub = regions.get(args.region) if isinstance(regions, dict) else None
        if not args.stub:
            where = Path(args.data_dir) / FEDERATION_FILE
            out.note(
                f"tongban: no region stub of {args.region} known: "
                + (
                    f"the federation in {where} has {', '.join(sorted(regions)) or 'none'}"
                    if federation
                    else f"no `tongban up` runs with data directory {args.data_dir} (no {where})"
                )
                + "; give --stub HOST:PORT or --data-dir"
            )
            return exits.USAGE
        if not (args.cert or args.key or args.ca):  # the federation's own PKI, or plaintext
            args.pki_dir = federation.get("pki") or args.pki_dir
            args.insecure = args.insecure or federation.get("pki") is None
    args.gateway = args.stub  # the address the channel goes to
    request = admin_pb2.DecideCaseRequest(
        application_id=args.application_id,
        state=DECISIONS[args.decision],
        reason=args.reason or "",
    )
    async with args.connect(args, "ops", DEV_OPS) as channel:
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


def register(sub: argparse._SubParsersAction, hooks: Hooks) -> None:  # type: ignore[type-arg]
    """Adds `stub decide`."""
    stub = sub.add_parser("stub", help="act as a province through its region stub")
    ssub = stub.add_subparsers(dest="stub_command", required=True)
    decide = ssub.add_parser(
        "decide",
        help="make a province's stub accept, reject or complete a case",
        description="Make a province's region stub decide a case delivered to it; the stub "
        "reports the decision to the gateway. Example: tongban stub decide --region 510000 "
        "0b8f…-… accept",
    )
    decide.add_argument("application_id", metavar="APPLICATION_ID")
    decide.add_argument("decision", metavar="DECISION", choices=sorted(DECISIONS))
    decide.add_argument("--region", required=True, help="the province whose stub decides")
    decide.add_argument("--reason", help="the reason given to the applicant")
    decide.add_argument("--stub", metavar="HOST:PORT", help="the stub's address")
    decide.add_argument(
        "--data-dir",
        default="data",
        help="data directory of the running `tongban up` (default: data)",
    )
    hooks.client_flags(decide)
    json_flag(decide)
    decide.set_defaults(
        func=run_call(_decide, lambda a: f"the region stub of {a.region} at {a.stub}", FLAGS),
        connect=hooks.connect,
    )
