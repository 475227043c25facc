"""Rules of the southbound contract a stub can be told to break, one switch per rule.

They exist so that the conformance kit (`tongban conformance`) can be shown to catch each
violation it checks for: a stub with one switch on must fail exactly the kit's matching case.
A federation never runs with any of them on.

Invariants:
- Every switch breaks one rule of `proto/gateway/api/v1/region.proto` (or of how a province
  reports back) and nothing else; with no switch on the stub keeps every rule.
- Switches are named in kebab-case on the command line (`--break NAME[,NAME…]`) and in
  `TONGBAN_STUB_BREAK`; an unknown name is a configuration error, never ignored.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Break(enum.StrEnum):
    """One rule the stub breaks on purpose."""

    REPLAY_NOT_DUPLICATE = "replay-not-duplicate"
    """A repeated delivery gets the original receipt but `duplicate` false."""
    RACY_DUPLICATES = "racy-duplicates"
    """The case is looked up and created in two steps with a pause between, so concurrent
    deliveries of one id each get a case (and a receipt) of their own."""
    ACCEPT_CHANGED_REPLAY = "accept-changed-replay"
    """A repeated delivery with other content is answered as a duplicate instead of refused."""
    INTERNAL_ON_MALFORMED = "internal-on-malformed"
    """A malformed delivery fails with INTERNAL instead of INVALID_ARGUMENT."""
    IGNORE_DEADLINE = "ignore-deadline"
    """A delivery runs to the end and records its case however late: its deadline is not
    checked and the caller's cancellation does not stop it (the latency fault included)."""
    STATUS_WITHOUT_RECEIPT = "status-without-receipt"
    """GetApplicationStatus leaves the receipt id out."""
    UNKNOWN_STATUS_OK = "unknown-status-ok"
    """GetApplicationStatus answers an unknown application id with an empty status."""
    PRIVATE_JWK = "private-jwk"
    """The JWKS carries the signing keys' private members."""
    STATUS_LIST_UNCOMPRESSED = "status-list-uncompressed"
    """The status list's `lst` is not zlib-compressed."""
    STATUS_LIST_FOREIGN_KEY = "status-list-foreign-key"
    """The status list is signed with a key that is not in the JWKS."""
    REPORT_WITHOUT_EVENT_ID = "report-without-event-id"
    """Status reports to the gateway carry no event id."""
    WITHDRAW_NOOP = "withdraw-noop"
    """WithdrawApplication answers OK but leaves the case as it was."""
    FETCH_INTERNAL_ON_MALFORMED = "fetch-internal-on-malformed"
    """A malformed FetchLicense fails with INTERNAL instead of INVALID_ARGUMENT."""
    ADMIT_ANY_CLIENT = "admit-any-client"
    """Over mTLS, RegionService admits any client certificate of the federation's CA."""


def parse_breaks(names: Iterable[str]) -> frozenset[Break]:
    """The switches named; raises ValueError naming the first unknown one."""
    found: set[Break] = set()
    for name in names:
        try:
            found.add(Break(name.strip()))
        except ValueError:
            known = ", ".join(b.value for b in Break)
            raise ValueError(f"{name.strip()!r} is not one of {known}") from None
    return frozenset(found)
