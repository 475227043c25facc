"""`tongban bundle`: submit and follow a 一件事 as a provincial platform would.

`apply` submits a bundle of a theme (roles bound with `--role ROLE=PROVINCE`, the one form with
`--field NAME=VALUE`, theme materials with `--paper`/`--license`, the consent with
`--consent MEMBER/MATERIAL`); `status` gets or watches one; `withdraw` and `rate` act on it.
Output is one readable block per bundle (its state, then a line per member); `--json` prints the
bundle as JSON with the applicant's number masked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.api.v1 import application_pb2, bundle_pb2, bundle_pb2_grpc
from gateway.catalog import codes
from gateway.security.pki import DEV_OPS
from gateway.tools.exits import CommandError

Channel = Callable[..., AbstractAsyncContextManager[grpc.aio.Channel]]
"""`cli._channel`: (args, role, name, chosen_by=FLAG) → a channel to `--gateway`."""

REASONS = {
    v.name.removeprefix("RATING_REASON_").lower(): v.number
    for v in bundle_pb2.RatingReason.DESCRIPTOR.values
    if v.number
}


def _pairs(items: list[str] | None, flag: str, sep: str = "=") -> list[tuple[str, str]]:
    out = []
    for item in items or []:
        key, found, value = item.partition(sep)
        if not found or not key:
            raise CommandError(f"{flag} takes KEY{sep}VALUE, got {item!r}")
        out.append((key, value))
    return out


def _name(value: str) -> str:
    return value if value.startswith("bundles/") else f"bundles/{value}"


def show(bundle: bundle_pb2.Bundle, *, as_json: bool) -> None:
    """Prints a bundle: readable lines, or JSON (the applicant's number masked)."""
    if as_json:
        data: dict[str, Any] = json.loads(json_format.MessageToJson(bundle))
        if "applicant" in data and "idNumber" in data["applicant"]:
            data["applicant"]["idNumber"] = codes.mask_citizen_id(bundle.applicant.id_number)
        print(json.dumps(data, ensure_ascii=False, indent=2), flush=True)
        return
    state = bundle_pb2.BundleState.Name(bundle.state).removeprefix("BUNDLE_STATE_")
    due = bundle.due_time.ToDatetime().date().isoformat() if bundle.HasField("due_time") else "-"
    late = " OVERDUE" if bundle.overdue else ""
    print(f"{bundle.name}  {bundle.theme_code} {bundle.theme_display_name}  {state}{late}")
    print(f"  due {due}  catalog {bundle.catalog_version}  filed in {bundle.origin_region}")
    if bundle.state_reason:
        print(f"  {bundle.state_reason}")
    for m in bundle.members:
        member_state = application_pb2.ApplicationState.Name(m.state).removeprefix(
            "APPLICATION_STATE_"
        )
        after = f" after {','.join(m.after_member_ids)}" if m.after_member_ids else ""
        reason = f" ({m.state_reason})" if m.state_reason else ""
        print(f"  {m.member_id:<12} {m.role:<13} {m.target_region}  {member_state}{reason}{after}")
    for r in bundle.ratings:
        print(f"  rated {r.score}/5 {r.region_code or 'whole bundle'}")
    print(flush=True)


async def apply(args: argparse.Namespace, channel: Channel) -> int:
    """Submits a bundle in `--origin`'s name."""
    materials = [
        application_pb2.Material(material_id=k, paper=application_pb2.PaperMaterial(description=v))
        for k, v in _pairs(args.paper, "--paper")
    ]
    materials += [
        application_pb2.Material(material_id=k, license_token=v)
        for k, v in _pairs(args.license, "--license")
    ]
    request = bundle_pb2.SubmitBundleRequest(
        request_id=args.request_id or str(uuid.uuid4()),
        origin_region=args.origin,
        theme_code=args.theme,
        roles=[
            bundle_pb2.RoleBinding(role=k, region_code=v) for k, v in _pairs(args.role, "--role")
        ],
        applicant=application_pb2.Applicant(
            id_type=args.id_type_map[args.id_type],
            id_number=args.id_number,
            display_name=args.name,
        ),
        form_fields=[
            application_pb2.FormField(key=k, value=v) for k, v in _pairs(args.field, "--field")
        ],
        materials=materials,
        consent=bundle_pb2.Consent(
            flows=[
                bundle_pb2.FlowConsent(member_id=k, material_id=v)
                for k, v in _pairs(args.consent, "--consent", "/")
            ],
            consent_time=Timestamp(seconds=int(time.time())),
            channel=args.channel,
        ),
    )
    async with channel(args, "region", args.origin, chosen_by="--origin") as ch:
        answer = await bundle_pb2_grpc.BundleServiceStub(ch).SubmitBundle(
            request, timeout=args.timeout
        )
    show(answer.bundle, as_json=args.json)
    return 0


async def status(args: argparse.Namespace, channel: Channel) -> int:
    """Gets a bundle, or watches it until every member has ended."""
    role, _, identity = (args.as_identity or f"ops/{DEV_OPS}").partition("/")
    async with channel(args, role, identity, chosen_by="--as") as ch:
        stub = bundle_pb2_grpc.BundleServiceStub(ch)
        if args.watch:
            async for item in stub.WatchBundle(
                bundle_pb2.WatchBundleRequest(name=_name(args.bundle))
            ):
                show(item.bundle, as_json=args.json)
            return 0
        got = await stub.GetBundle(bundle_pb2.GetBundleRequest(name=_name(args.bundle)))
    show(got.bundle, as_json=args.json)
    return 0


async def withdraw(args: argparse.Namespace, channel: Channel) -> int:
    """Withdraws a bundle in its owner's name."""
    async with channel(args, "region", args.origin, chosen_by="--origin") as ch:
        answer = await bundle_pb2_grpc.BundleServiceStub(ch).WithdrawBundle(
            bundle_pb2.WithdrawBundleRequest(name=_name(args.bundle), reason=args.reason or ""),
            timeout=args.timeout,
        )
    show(answer.bundle, as_json=args.json)
    return 0


async def rate(args: argparse.Namespace, channel: Channel) -> int:
    """Records the applicant's rating (好差评) of a finished bundle."""
    unknown = [r for r in args.reason or [] if r not in REASONS]
    if unknown:
        raise CommandError(f"--reason {unknown[0]!r} is not one of {', '.join(REASONS)}")
    rating = bundle_pb2.Rating(
        score=args.score,
        reasons=[REASONS[r] for r in args.reason or []],  # type: ignore[misc]
        comment=args.comment or "",
        region_code=args.region or "",
    )
    async with channel(args, "region", args.origin, chosen_by="--origin") as ch:
        answer = await bundle_pb2_grpc.BundleServiceStub(ch).RateBundle(
            bundle_pb2.RateBundleRequest(name=_name(args.bundle), rating=rating)
        )
    show(answer.bundle, as_json=args.json)
    return 0


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    command: Callable[..., argparse.ArgumentParser],
    gateway_default: str,
    gateway_help: str,
    tls_flags: Callable[[argparse.ArgumentParser], None],
    channel: Channel,
    id_types: dict[str, int],
) -> None:
    """Registers `tongban bundle apply|status|withdraw|rate`."""
    bundle = command(
        sub,
        "bundle",
        "submit and follow a 一件事 (a theme's matters across provinces, one form)",
        "tongban bundle status 0193c6d2-7f3c-7d0a-9a51-3b2f4c1e8d21 --watch",
    )
    bsub = bundle.add_subparsers(dest="bundle_command", required=True)

    def common(parser: argparse.ArgumentParser, *, origin: bool) -> None:
        parser.add_argument(
            "--gateway", default=gateway_default, help=f"{gateway_help} (default: %(default)s)"
        )
        if origin:
            parser.add_argument(
                "--origin", required=True, help="the submitting (owning) province, e.g. 110000"
            )
        parser.add_argument(
            "--timeout",
            type=float,
            default=15.0,
            help="seconds to wait for the gateway's answer (default: %(default)s)",
        )
        parser.add_argument("--json", action="store_true", help="print the bundle as JSON")
        tls_flags(parser)

    apply_cmd = command(
        bsub,
        "apply",
        "submit a bundle: one form, one consent, every role's province",
        "tongban bundle apply --origin 110000 --theme YJS0008 --role insured=440000 "
        "--role transfer_out=510000 --role residence=110000 --id-number 110105199003071239 "
        "--name 张三 --field id_number=110105199003071239 --field name=张三 "
        "--field retire_date=2026-12-31 --field bank_account=6222020200112233445 "
        "--paper TM01=身份证 --paper TM02=社保卡 --paper TM03=申领表 --consent pension/M04",
    )
    common(apply_cmd, origin=True)
    apply_cmd.add_argument("--theme", required=True, help="the theme's code, e.g. YJS0008")
    apply_cmd.add_argument(
        "--request-id", help="idempotency key: the same id is the same bundle (default: new)"
    )
    apply_cmd.add_argument(
        "--role", action="append", help="ROLE=PROVINCE, e.g. insured=440000 (one per role)"
    )
    apply_cmd.add_argument(
        "--id-type",
        choices=sorted(id_types),
        default="citizen",
        help="the applicant's document (default: %(default)s)",
    )
    apply_cmd.add_argument("--id-number", required=True, help="the applicant's document number")
    apply_cmd.add_argument("--name", required=True, help="the applicant's name")
    apply_cmd.add_argument(
        "--field", action="append", help="NAME=VALUE of the theme's one form (repeatable)"
    )
    apply_cmd.add_argument(
        "--paper", action="append", help="THEME_MATERIAL=DESCRIPTION, e.g. TM01=身份证复印件"
    )
    apply_cmd.add_argument(
        "--license", action="append", help="THEME_MATERIAL=TOKEN: an e-licence standing in"
    )
    apply_cmd.add_argument(
        "--consent",
        action="append",
        help="MEMBER/MATERIAL: a data flow the applicant allows, e.g. pension/M04",
    )
    apply_cmd.add_argument(
        "--channel",
        default="cli",
        help="where the applicant gave the consent (default: %(default)s)",
    )
    apply_cmd.set_defaults(func=lambda a: asyncio.run(apply(a, channel)), id_type_map=id_types)

    status_cmd = command(
        bsub,
        "status",
        "get (or --watch) a bundle: its state and every member's",
        "tongban bundle status 0193c6d2-7f3c-7d0a-9a51-3b2f4c1e8d21 --as region/110000",
    )
    status_cmd.add_argument("bundle", help="bundle id or bundles/{id}")
    common(status_cmd, origin=False)
    status_cmd.add_argument(
        "--watch", action="store_true", help="print the bundle after every change until it ends"
    )
    status_cmd.add_argument(
        "--as",
        dest="as_identity",
        help=f"the identity to call as, ROLE/NAME (default: ops/{DEV_OPS})",
    )
    status_cmd.set_defaults(func=lambda a: asyncio.run(status(a, channel)))

    withdraw_cmd = command(
        bsub,
        "withdraw",
        "withdraw a bundle that has not ended (undelivered members are cancelled)",
        "tongban bundle withdraw 0193c6d2-7f3c-7d0a-9a51-3b2f4c1e8d21 --origin 110000",
    )
    withdraw_cmd.add_argument("bundle", help="bundle id or bundles/{id}")
    common(withdraw_cmd, origin=True)
    withdraw_cmd.add_argument("--reason", help="the applicant's reason")
    withdraw_cmd.set_defaults(func=lambda a: asyncio.run(withdraw(a, channel)))

    rate_cmd = command(
        bsub,
        "rate",
        "record the applicant's rating (好差评, 1-5) of a finished bundle",
        "tongban bundle rate 0193c6d2-7f3c-7d0a-9a51-3b2f4c1e8d21 --origin 110000 --score 5 "
        "--reason fast",
    )
    rate_cmd.add_argument("bundle", help="bundle id or bundles/{id}")
    common(rate_cmd, origin=True)
    rate_cmd.add_argument("--score", type=int, required=True, help="1 (worst) to 5 (best)")
    rate_cmd.add_argument(
        "--reason", action="append", help=f"one of: {', '.join(REASONS)} (repeatable)"
    )
    rate_cmd.add_argument("--comment", help="a short comment (never exported as a metric)")
    rate_cmd.add_argument("--region", help="rate one member province instead of the whole")
    rate_cmd.set_defaults(func=lambda a: asyncio.run(rate(a, channel)))
