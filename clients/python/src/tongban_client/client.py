"""`TongbanClient`: one channel to the gateway and one section per part of the API.

    async with TongbanClient(ClientConfig.mutual_tls(...)) as client:
        client.applications   submit, get, list, watch, wait, report_status
        client.catalog        get_matter, list_matters, get_theme, list_themes, resolve
        client.licenses       verify

Each section is a small class over one service's stub and the shared `Calls` (deadline,
typed errors, retries); a new part of the API becomes one more section, built here the same
way.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, cast

import grpc

from tongban_client.api.v1 import application_pb2_grpc, catalog_pb2_grpc, license_pb2_grpc
from tongban_client.applications import Applications
from tongban_client.calls import Calls
from tongban_client.catalog import Catalog
from tongban_client.config import ClientConfig
from tongban_client.licenses import Licenses


def open_channel(config: ClientConfig) -> grpc.aio.Channel:
    """The channel `config` describes: mutual TLS with its files, or plaintext."""
    if config.tls is None:
        return grpc.aio.insecure_channel(config.target)
    tls = config.tls
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca.read_bytes(),
        private_key=tls.key.read_bytes(),
        certificate_chain=tls.cert.read_bytes(),
    )
    options: list[tuple[str, Any]] = []
    if tls.server_name is not None:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.aio.secure_channel(config.target, credentials, options)


class TongbanClient:
    """A provincial platform's client of the gateway. Open it inside a running event loop;
    `async with` (or `close`) closes its channel."""

    def __init__(self, config: ClientConfig) -> None:
        """Opens the channel; `config.tls`'s files are read now."""
        self.config = config
        """The configuration it was opened with."""
        self._channel = open_channel(config)
        calls = Calls(config)
        self.applications = Applications(
            cast(
                "application_pb2_grpc.ApplicationServiceAsyncStub",
                application_pb2_grpc.ApplicationServiceStub(self._channel),
            ),
            calls,
        )
        """Applications: submit, follow, report."""
        self.catalog = Catalog(
            cast(
                "catalog_pb2_grpc.CatalogServiceAsyncStub",
                catalog_pb2_grpc.CatalogServiceStub(self._channel),
            ),
            calls,
        )
        """The national catalog: matters, themes, local codes."""
        self.licenses = Licenses(
            cast(
                "license_pb2_grpc.LicenseServiceAsyncStub",
                license_pb2_grpc.LicenseServiceStub(self._channel),
            ),
            calls,
        )
        """E-licence verification."""

    async def close(self, grace: float | None = None) -> None:
        """Closes the channel; calls still running get `grace` seconds (None: cancelled)."""
        await self._channel.close(grace)

    async def __aenter__(self) -> TongbanClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
