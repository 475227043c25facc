"""The licences a province issues when it completes a case (办结), and the faults that make
them wrong, for the gateway's refusal tests.

Invariants:
- A completed case issues one licence of each type its matter lists as `results` in the
  catalog version the case was routed under (`catalog.MatterResults`), in that order, held by
  the applicant, and put on the applicant's record (`holdings`), so a later FetchLicense finds
  it. A case whose delivery named no applicant of a known id type issues none.
- A licence's number (证照编号) is the case's receipt id without its dashes: every licence of a
  case is recognisably the case's.
- Forged licences are signed by a key the province never published; mismatched ones are held
  by `another_holder`, a valid number of the same kind that is not the applicant's. Never both
  (the fault settings refuse it).
- Pure but for the issuing: which licences, for whom and how wrong are decided here from the
  case alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gateway.api.v1 import application_pb2
from gateway.catalog import codes
from gateway.catalog.fields import id_document
from region_stubs.cases import Case
from region_stubs.holdings import Holdings

log = logging.getLogger(__name__)

_USCC = id_document(application_pb2.ID_TYPE_USCC)


def another_holder(holder_id_type: str, number: str) -> str:
    """A valid id number of the kind `holder_id_type` names that is not `number` (itself a
    valid one): its last digit before the check character changed, the check recomputed."""
    if len(number) != 18:  # a 2017 permanent residence card: no check character
        return number[:-1] + ("1" if number[-1] == "0" else "0")
    body = number[:16] + ("1" if number[16] == "0" else "0")
    uscc = _USCC is not None and holder_id_type == _USCC.holder_code
    check = codes.uscc_check_char(body) if uscc else codes.citizen_id_check_char(body)
    return body + check


def issue_results(
    case: Case,
    results: Sequence[str],
    holdings: Holdings,
    *,
    forged: bool = False,
    mismatched: bool = False,
) -> list[str]:
    """Issues the case's results; returns their tokens, in `results` order."""
    if not results:
        return []
    document = id_document(case.holder_id_type)
    if document is None or not case.holder_id_number:
        log.warning("case %s names no applicant to hold its results", case.application_id)
        return []
    holder = case.holder_id_number
    if mismatched:
        holder = another_holder(document.holder_code, holder)
    number = case.receipt_id.replace("-", "")
    return [
        holdings.issue(
            type_code,
            number,
            holder_id_type=document.holder_code,
            holder_id_number=holder,
            forged=forged,
        ).token
        for type_code in results
    ]
