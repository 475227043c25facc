"""How `tongban apply` and `tongban status` show an application, and name their flags.

An application is shown by its states and names (`DELIVERED`, the matter's code and name, the
provinces' codes), the applicant's id number masked and the name left out, as in the JSON form
(`summarize`) that `--json` prints.
"""

from __future__ import annotations

import json

from google.protobuf import json_format

from gateway.api.v1 import application_pb2
from gateway.catalog import codes
from gateway.tools.output import FlagMap, Output

APPLY_FLAGS = FlagMap(
    {
        "request_id": "--request-id",
        "origin_region": "--origin",
        "target_region": "--target",
        "local_matter_code": "--local-code",
        "national_matter_code": "--national-code",
        "applicant.id_type": "--id-type",
        "applicant.id_number": "--id-number",
        "applicant.display_name": "--name",
        "applicant": "--id-type/--id-number/--name",
        "form_fields": "--field",
        "materials": "--paper/--license",
    }
)
"""`tongban apply`'s flags by the SubmitApplicationRequest fields they fill."""
STATUS_FLAGS = FlagMap({"name": "APPLICATION"})
"""`tongban status`'s argument."""


def summarize(app: application_pb2.Application) -> dict[str, object]:
    """A printable view of an application, the applicant's id masked."""
    data: dict[str, object] = json.loads(json_format.MessageToJson(app, ensure_ascii=False))
    applicant = data.get("applicant")
    if isinstance(applicant, dict) and "idNumber" in applicant:
        applicant["idNumber"] = codes.mask_citizen_id(app.applicant.id_number)
    return data


def state_name(state: application_pb2.ApplicationState.ValueType) -> str:
    """`DELIVERED` for APPLICATION_STATE_DELIVERED."""
    return application_pb2.ApplicationState.Name(state).removeprefix("APPLICATION_STATE_")


def show_application(out: Output, app: application_pb2.Application) -> None:
    """The application, readable or as JSON."""
    if out.json_mode:
        out.data(summarize(app))
        return
    id_type = application_pb2.IdType.Name(app.applicant.id_type).removeprefix("ID_TYPE_")
    out.fields(
        [
            ("Application", app.application_id),
            (
                "State",
                state_name(app.state) + (f" ({app.state_reason})" if app.state_reason else ""),
            ),
            ("Matter", f"{app.national_matter_code} {app.matter_display_name}".strip()),
            ("From", f"{app.origin_region}  {app.local_matter_code}"),
            ("To", f"{app.target_region}  {app.target_local_matter_code}"),
            ("Receipt", app.receipt_id or "-"),
            ("Applicant", f"{id_type} {codes.mask_citizen_id(app.applicant.id_number)}"),
            ("Catalog", app.catalog_version),
            ("Attempts", str(app.delivery_attempts)),
        ]
    )
    if app.materials:
        out.table(
            ["Material", "Supplied as"],
            [
                (
                    m.material_id,
                    "waived"
                    if m.waived
                    else (
                        f"e-licence {m.license_identifier}"
                        if m.license_identifier
                        else f"paper: {m.paper.description}"
                    ),
                )
                for m in app.materials
            ],
        )
    if app.events:
        out.table(
            ["Time", "State", "Reason", "By"],
            [
                (
                    f"{e.event_time.ToDatetime():%Y-%m-%d %H:%M:%S} UTC",
                    state_name(e.state),
                    e.reason or "-",
                    e.actor or "-",
                )
                for e in app.events
            ],
        )
