"""The caller of the current RPC, and the one call handlers make to authorize an action.

Invariants, in plain words:

- The `AuthInterceptor` sets the caller for every RPC before the handler runs, from the
  verified client certificate only; handlers never look at request fields or metadata to learn
  who is calling, they call `check(action)` with facts taken from the request and the store.
- Outside an RPC (a unit test calling a servicer directly) nobody has set a caller: `check`
  then fails closed with UNAUTHENTICATED, so a servicer wired without the interceptor cannot
  serve anybody.
- Insecure mode (plaintext, `--insecure`, the test suite) is explicit: the interceptor sets a
  caller with `enforced=False`, which `check` lets through. The gateway logs a warning at
  start; the audit log names such callers `insecure`.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass

from gateway.security.authz import Action, require
from gateway.security.identity import Identity

INSECURE_ACTOR = "insecure"
"""The audit actor of calls served in insecure mode."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as the auth interceptor established it."""

    identity: Identity | None
    """The verified identity; None in insecure mode."""
    enforced: bool
    """False only in insecure mode: authorization is skipped."""

    @property
    def actor(self) -> str:
        """The caller as the audit log names it."""
        if self.identity is not None:
            return self.identity.uri
        return INSECURE_ACTOR if not self.enforced else "anonymous"


_UNSET = Caller(None, enforced=True)
_CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("tongban_caller", default=_UNSET)


def current_caller() -> Caller:
    """The caller of the RPC being handled (an unauthenticated one outside any RPC)."""
    return _CALLER.get()


def set_caller(caller: Caller) -> contextvars.Token[Caller]:
    """Sets the caller for the rest of this task; the interceptor resets it afterwards."""
    return _CALLER.set(caller)


def reset_caller(token: contextvars.Token[Caller]) -> None:
    """Undoes `set_caller` (a no-op when a stream is finalized in another context: each RPC
    runs in its own task, whose context dies with it)."""
    with contextlib.suppress(ValueError):
        _CALLER.reset(token)


def check(action: Action) -> Identity | None:
    """Raises the refusal when the current caller may not perform `action`.

    Returns the caller's identity (None in insecure mode).
    """
    caller = _CALLER.get()
    if not caller.enforced:
        return None
    return require(caller.identity, action)
