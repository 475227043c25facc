"""`client.catalog`: the national catalog's matters and themes, and local codes resolved.

An empty `version` everywhere means the catalog version in force (`-` in resource names).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from tongban_client.api.v1 import catalog_pb2 as pb
from tongban_client.api.v1 import catalog_pb2_grpc
from tongban_client.calls import Calls


def version_name(version: str = "") -> str:
    """`catalogVersions/{version}`, `-` for the version in force."""
    return f"catalogVersions/{version or '-'}"


class Catalog:
    """The CatalogService's reads."""

    def __init__(self, stub: catalog_pb2_grpc.CatalogServiceAsyncStub, calls: Calls):
        self._stub = stub
        self._calls = calls

    async def get_matter(
        self, code: str, *, version: str = "", timeout: float | None = None
    ) -> pb.Matter:
        """The matter with the 12-digit national basic code `code`."""
        response: pb.GetMatterResponse = await self._calls.unary(
            "GetMatter",
            self._stub.GetMatter,
            pb.GetMatterRequest(name=f"{version_name(version)}/matters/{code}"),
            timeout=timeout,
        )
        return response.matter

    async def list_matters(
        self,
        *,
        version: str = "",
        matter_type: pb.MatterType.ValueType = pb.MATTER_TYPE_UNSPECIFIED,
        cross_region_mode: pb.CrossRegionMode.ValueType = pb.CROSS_REGION_MODE_UNSPECIFIED,
        page_size: int = 0,
    ) -> AsyncIterator[pb.Matter]:
        """Every matter of the version in code order, page after page; only those of
        `matter_type` and offering `cross_region_mode` when they are set."""
        token = ""
        while True:
            page: pb.ListMattersResponse = await self._calls.unary(
                "ListMatters",
                self._stub.ListMatters,
                pb.ListMattersRequest(
                    parent=version_name(version),
                    type=matter_type,
                    cross_region_mode=cross_region_mode,
                    page_size=page_size,
                    page_token=token,
                ),
            )
            for matter in page.matters:
                yield matter
            token = page.next_page_token
            if not token:
                return

    async def get_theme(
        self, code: str, *, version: str = "", timeout: float | None = None
    ) -> pb.Theme:
        """The theme (一件事) with code `code`."""
        response: pb.GetThemeResponse = await self._calls.unary(
            "GetTheme",
            self._stub.GetTheme,
            pb.GetThemeRequest(name=f"{version_name(version)}/themes/{code}"),
            timeout=timeout,
        )
        return response.theme

    async def list_themes(
        self, *, version: str = "", page_size: int = 0
    ) -> AsyncIterator[pb.Theme]:
        """Every theme of the version in code order, page after page."""
        token = ""
        while True:
            page: pb.ListThemesResponse = await self._calls.unary(
                "ListThemes",
                self._stub.ListThemes,
                pb.ListThemesRequest(
                    parent=version_name(version), page_size=page_size, page_token=token
                ),
            )
            for theme in page.themes:
                yield theme
            token = page.next_page_token
            if not token:
                return

    async def resolve(
        self,
        region_code: str,
        local_code: str,
        *,
        national_code: str = "",
        version: str = "",
        timeout: float | None = None,
    ) -> pb.ResolvedMatter:
        """The national matter that the province `region_code` implements as `local_code`;
        `national_code` picks one when the local code covers several (else
        `FailedPrecondition` `LOCAL_CODE_AMBIGUOUS`, the candidates in its metadata)."""
        response: pb.ResolveLocalCodeResponse = await self._calls.unary(
            "ResolveLocalCode",
            self._stub.ResolveLocalCode,
            pb.ResolveLocalCodeRequest(
                region_code=region_code,
                local_code=local_code,
                national_code=national_code,
                catalog_version=version,
            ),
            timeout=timeout,
        )
        return response.resolved
