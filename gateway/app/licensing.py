"""Building the licence verifier from the gateway's configuration and its region client.

The trust list comes from `GatewayConfig.license_trust` (a JSON file, see `trust.py`) when set.
Without one, every member province (configured, or with a published implementation list) is
trusted for every licence type the catalog names: right for the local federation, where each
stub is its province's issuer; a production gateway names its issuers explicitly.
"""

from __future__ import annotations

import json
import time

from gateway.app.config import GatewayConfig
from gateway.catalog.registry import CatalogRegistry
from gateway.events import NO_EVENTS, Events
from gateway.licenses.keys import KeyCache
from gateway.licenses.status_list import StatusListCache
from gateway.licenses.trust import IssuerTrust, TrustList
from gateway.licenses.verifier import LicenseVerifier
from gateway.routing.client import RegionClient

FETCH_TIMEOUT = 2.0
"""Seconds allowed for one key or status-list fetch from a province."""


def trust_list(config: GatewayConfig, registry: CatalogRegistry) -> TrustList:
    """The configured trust list, or the federation default."""
    if config.license_trust is not None:
        data = json.loads(config.license_trust.read_text(encoding="utf-8"))
        return TrustList.from_mapping(data)
    latest = registry.snapshot.latest()
    types = frozenset(latest.document.license_types) if latest else frozenset()
    members = set(config.regions) | set(registry.snapshot.region_indexes())
    return TrustList(
        issuers={code: IssuerTrust(code, types) for code in sorted(members)},
        audience=config.license_audience,
    )


def build_license_verifier(
    config: GatewayConfig,
    client: RegionClient,
    registry: CatalogRegistry,
    *,
    events: Events = NO_EVENTS,
) -> LicenseVerifier:
    """A verifier whose keys and status lists are fetched from the provinces through `client`."""
    trust = trust_list(config, registry)

    async def fetch_keys(region_code: str) -> tuple[str, int]:
        response = await client.get_license_keys(region_code, FETCH_TIMEOUT)
        return response.jwks_json, response.max_age_seconds

    async def fetch_status(region_code: str) -> tuple[str, int]:
        response = await client.get_license_status_list(region_code, FETCH_TIMEOUT)
        return response.status_list_token, response.max_age_seconds

    keys = KeyCache(fetch_keys, time.time, settings=trust.keys)
    status_lists = StatusListCache(fetch_status, keys, trust, time.time)
    return LicenseVerifier(trust, keys, status_lists, time.time, events=events)
