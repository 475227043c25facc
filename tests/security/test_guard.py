"""The caller contextvar: set per RPC by the interceptor; fails closed when nobody set it."""

from __future__ import annotations

import grpc
import pytest

from gateway.errors import PermissionDenied, Unauthenticated
from gateway.security import authz, guard
from gateway.security.identity import Identity, Role


def test_outside_an_rpc_every_action_is_refused() -> None:
    with pytest.raises(Unauthenticated):
        guard.check(authz.ReadCatalog())


def test_insecure_mode_skips_authorization() -> None:
    token = guard.set_caller(guard.Caller(None, enforced=False))
    try:
        assert guard.check(authz.SubmitApplication("440000")) is None
        assert guard.current_caller().actor == guard.INSECURE_ACTOR
    finally:
        guard.reset_caller(token)


def test_an_identity_is_held_to_the_policy() -> None:
    identity = Identity(Role.REGION, "510000", serial=7)
    token = guard.set_caller(guard.Caller(identity, enforced=True))
    try:
        assert guard.check(authz.SubmitApplication("510000")) == identity
        with pytest.raises(PermissionDenied) as caught:
            guard.check(authz.SubmitApplication("440000"))
        assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert caught.value.metadata["denial"] == "NOT_OWN_REGION"
        assert guard.current_caller().actor == "spiffe://tongban/region/510000"
    finally:
        guard.reset_caller(token)
