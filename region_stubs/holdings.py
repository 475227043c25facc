"""The province's licence record: which licences of its issue each holder holds, as
FetchLicense reads it.

Invariants, in plain words:

- The province issues only the licence types it is trusted with: those the gateway's trust
  list (`TONGBAN_LICENSE_TRUST`, the same file) names for it, or, without a trust list, every
  type of the newest national catalog, which is what the gateway trusts every member of a local
  federation with (`gateway.app.licensing.trust_list`). A fetch of any other type finds nothing.
- Every licence issued to a holder through `Holdings.issue` is on their record. A holder who
  has never been issued one of a type the province issues counts as holding one on paper: the
  first fetch issues it, later fetches find it. An operator may say a holder holds none
  (`set_held`); fetches then find nothing until told otherwise.
- A fetch answers the newest licence on record that is VALID in the status list and not
  expired: a revoked or suspended licence is never fetched, and is not replaced by a new one.
- A forged licence is not the province's: it is never put on anyone's record.
- In memory, like the issuer's keys: a restarted stub starts a new record. Holder ids are
  personal data: they key the record and appear in no message.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from gateway.licenses.status_list import LicenseStatus
from gateway.licenses.trust import TrustConfigError, TrustList
from gateway.times import utc_now
from region_stubs.issuer import IssuedLicense, LicenseIssuer

_Key = tuple[str, str, str]
"""(licence type code, holder id type as a token names it, holder id number)."""


def issued_types(
    trust: Path | None, region_code: str, catalog_types: Collection[str]
) -> frozenset[str]:
    """The licence types the province issues; raises `OSError` for a file it cannot read and
    `TrustConfigError`, naming the file, for one it cannot use."""
    if trust is None:
        return frozenset(catalog_types)
    text = trust.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TrustConfigError("the trust list must be a JSON object")
        issuer = TrustList.from_mapping(data).issuer(region_code)
    except ValueError as e:  # not JSON, or a TrustConfigError
        raise TrustConfigError(f"{trust}: not a usable licence trust list: {e}") from e
    return frozenset() if issuer is None else issuer.license_types


@dataclass(eq=False)
class Holdings:
    """Who holds which licences the province issued."""

    issuer: LicenseIssuer
    """Signs every licence on the record."""
    types: frozenset[str]
    """The licence types the province issues (`issued_types`)."""
    clock: Callable[[], datetime] = utc_now
    """An aware clock, for expiry."""
    _record: dict[_Key, list[IssuedLicense]] = field(default_factory=dict)
    _withheld: set[_Key] = field(default_factory=set)

    def issue(
        self,
        type_code: str,
        number: str,
        *,
        holder_id_type: str,
        holder_id_number: str,
        issuing_agency_code: str | None = None,
        valid_days: int = 365,
        not_before_offset: int = 0,
        forged: bool = False,
    ) -> IssuedLicense:
        """Issues a licence (`LicenseIssuer.issue`, same arguments and errors) and, unless
        forged, puts it on the holder's record."""
        issued = self.issuer.issue(
            type_code,
            number,
            holder_id_type=holder_id_type,
            holder_id_number=holder_id_number,
            issuing_agency_code=issuing_agency_code,
            valid_days=valid_days,
            not_before_offset=not_before_offset,
            forged=forged,
        )
        if not forged:
            self._record.setdefault((type_code, holder_id_type, holder_id_number), []).append(
                issued
            )
        return issued

    def set_held(
        self, type_code: str, holder_id_type: str, holder_id_number: str, held: bool
    ) -> None:
        """Says whether the holder holds licences of the type (all do until told otherwise)."""
        key = (type_code, holder_id_type, holder_id_number)
        if held:
            self._withheld.discard(key)
        else:
            self._withheld.add(key)

    def fetch(
        self, type_code: str, holder_id_type: str, holder_id_number: str
    ) -> IssuedLicense | None:
        """The holder's newest valid licence of the type, issued now if they never had one;
        None when the province issues no such type or the holder has no valid one."""
        key = (type_code, holder_id_type, holder_id_number)
        if type_code not in self.types or key in self._withheld:
            return None
        held = self._record.get(key)
        if held is None:
            return self.issue(
                type_code,
                uuid.uuid4().hex.upper(),
                holder_id_type=holder_id_type,
                holder_id_number=holder_id_number,
            )
        now = self.clock().timestamp()
        for issued in reversed(held):
            valid = self.issuer.status_of(issued.status_index) is LicenseStatus.VALID
            if valid and issued.expires_at > now:
                return issued
        return None
