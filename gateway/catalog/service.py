"""The CatalogService servicer: thin glue between the API and the catalog registry.

Every handler takes one snapshot at its start and answers from it alone, so a publication that
lands mid-request does not change the answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import datetime

import grpc

from gateway.api.v1 import catalog_pb2, catalog_pb2_grpc
from gateway.catalog import convert, documents, fields, signing, wire
from gateway.catalog.codes import validate_basic_code
from gateway.catalog.diff import diff_catalogs
from gateway.catalog.registry import CatalogRegistry
from gateway.catalog.resolution import CatalogSnapshot, Resolution, resolve, targets
from gateway.errors import (
    CatalogInvalid,
    FieldViolation,
    InvalidMatterCode,
    InvalidRequest,
    MatterNotFound,
    ThemeNotFound,
    TongbanError,
)
from gateway.events import NO_EVENTS, CatalogPublished, CodeResolved, Events
from gateway.pagination import decode_token, encode_token, page_size
from gateway.security import authz, guard

MAX_BATCH = 1000
MAX_LOCAL_CODE = 128
_TYPES = catalog_pb2.MatterType.DESCRIPTOR
_MODES = catalog_pb2.CrossRegionMode.DESCRIPTOR


def _version_from_name(name: str, field: str) -> str:
    prefix, sep, version = name.partition("/")
    if prefix != "catalogVersions" or not sep or "/" in version:
        raise InvalidRequest(
            f"{field} must be catalogVersions/{{version}}",
            field_violations=[FieldViolation(field, "catalogVersions/{version}", "BAD_NAME")],
        )
    fields.raise_if_any(f"{field} is malformed", fields.text(version, field, fields.MAX_VERSION))
    return version


MAX_THEME_CODE = 32
"""Longest theme code a request may name."""


def _child_name(name: str, collection: str, max_code: int) -> tuple[str, str]:
    """(version, code) of `catalogVersions/{version}/{collection}/{code}`, both bounded."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "catalogVersions" or parts[2] != collection:
        shape = f"catalogVersions/{{version}}/{collection}/{{code}}"
        raise InvalidRequest(
            f"name must be {shape}", field_violations=[FieldViolation("name", shape, "BAD_NAME")]
        )
    fields.raise_if_any(
        "name is malformed",
        fields.text(parts[1], "name", fields.MAX_VERSION),
        fields.text(parts[3], "name", max_code),
    )
    return parts[1], parts[3]


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    """Serves the catalog from the registry's snapshots."""

    def __init__(
        self,
        registry: CatalogRegistry,
        standards_keys: Mapping[str, signing.PublicKey],
        clock: Callable[[], datetime],
        *,
        events: Events = NO_EVENTS,
    ) -> None:
        self.registry = registry
        self.standards_keys = standards_keys
        self.clock = clock
        self.events = events

    async def PublishCatalogVersion(
        self, request: catalog_pb2.PublishCatalogVersionRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.PublishCatalogVersionResponse:
        if request.validate_only:
            return await self._publish_version(request)
        try:
            response = await self._publish_version(request)
        except BaseException:
            self.events.emit(CatalogPublished("version", activated=False))
            raise
        self.events.emit(
            CatalogPublished(
                "version",
                activated=True,
                action="CatalogService.PublishCatalogVersion",
                version=response.catalog_version.version,
            )
        )
        return response

    async def _publish_version(
        self, request: catalog_pb2.PublishCatalogVersionRequest
    ) -> catalog_pb2.PublishCatalogVersionResponse:
        fields.raise_if_any(
            "signed_document is malformed",
            fields.text(
                request.signed_document,
                "signed_document",
                signing.MAX_DOCUMENT_BYTES * 2,
                required=True,
            ),
        )
        publisher, payload = signing.verify_catalog(request.signed_document, self.standards_keys)
        loaded = documents.loads_json(payload)
        if loaded.value is None:
            raise CatalogInvalid(
                "the catalog is not a JSON object", field_violations=loaded.violations
            )
        parsed = documents.parse_catalog(loaded.value, self.registry.snapshot.provinces)
        if parsed.value is None:
            raise CatalogInvalid(
                f"the catalog has {len(parsed.violations)} problem(s)",
                field_violations=parsed.violations,
            )
        if parsed.value.publisher != publisher:
            raise CatalogInvalid(
                "the document's publisher differs from its signer",
                field_violations=[FieldViolation("publisher", "must equal the signer", "MISMATCH")],
            )
        result = await self.registry.publish_version(
            parsed.value,
            loaded.value,
            signed_document=request.signed_document,
            validate_only=request.validate_only,
        )
        snapshot = self.registry.snapshot
        if all(r.digest != result.record.digest for r in snapshot.versions):
            # validate_only: the state is the one the version would have once published.
            snapshot = snapshot.with_version(result.record)
        response = catalog_pb2.PublishCatalogVersionResponse(
            catalog_version=convert.catalog_version(result.record, snapshot, self.clock()),
            impacts=convert.impacts(result.impacts),
        )
        if result.diff is not None:
            response.diff.CopyFrom(convert.diff(result.diff))
        return response

    async def GetCatalogVersion(
        self, request: catalog_pb2.GetCatalogVersionRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GetCatalogVersionResponse:
        snapshot, now = self.registry.snapshot, self.clock()
        record = snapshot.version(_version_from_name(request.name, "name"), now)
        return catalog_pb2.GetCatalogVersionResponse(
            catalog_version=convert.catalog_version(record, snapshot, now)
        )

    async def ListCatalogVersions(
        self, request: catalog_pb2.ListCatalogVersionsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ListCatalogVersionsResponse:
        snapshot, now = self.registry.snapshot, self.clock()
        size = page_size(request.page_size, default=50, maximum=200)
        query = {"m": "ListCatalogVersions"}
        start = int(decode_token(request.page_token, query) or 0)
        records = list(reversed(snapshot.versions))
        page = records[start : start + size]
        end = start + len(page)
        return catalog_pb2.ListCatalogVersionsResponse(
            catalog_versions=[convert.catalog_version(r, snapshot, now) for r in page],
            next_page_token=encode_token(end, query) if end < len(records) else "",
        )

    async def GetMatter(
        self, request: catalog_pb2.GetMatterRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GetMatterResponse:
        version, code = _child_name(request.name, "matters", MAX_LOCAL_CODE)
        snapshot, now = self.registry.snapshot, self.clock()
        record = snapshot.version(version, now)
        problem = validate_basic_code(code, snapshot.provinces)
        if problem is not None:
            raise InvalidMatterCode(
                problem.message,
                field_violations=[FieldViolation("name", problem.message, problem.reason)],
            )
        found = record.document.matters.get(code)
        if found is None:
            raise MatterNotFound(
                f"catalog version {record.document.version} has no matter {code}",
                metadata={"version": record.document.version},
            )
        return catalog_pb2.GetMatterResponse(matter=convert.matter(found, record.document.version))

    async def ListMatters(
        self, request: catalog_pb2.ListMattersRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ListMattersResponse:
        fields.raise_if_any(
            "the filter is malformed",
            fields.enum_value(request.type, "type", _TYPES),
            fields.enum_value(request.cross_region_mode, "cross_region_mode", _MODES),
        )
        snapshot, now = self.registry.snapshot, self.clock()
        record = snapshot.version(_version_from_name(request.parent, "parent"), now)
        version = record.document.version
        size = page_size(request.page_size, default=50, maximum=500)
        query = {
            "m": "ListMatters",
            "v": version,
            "t": request.type,
            "c": request.cross_region_mode,
        }
        start = int(decode_token(request.page_token, query) or 0)
        wanted_type = f"{request.type:02d}" if request.type else ""
        wanted_mode = convert.MODE_NAMES.get(request.cross_region_mode, "")
        matching = [
            m
            for m in record.document.matters.values()
            if (not wanted_type or m.type == wanted_type)
            and (not wanted_mode or wanted_mode in m.cross_region_modes)
        ]
        page = matching[start : start + size]
        end = start + len(page)
        return catalog_pb2.ListMattersResponse(
            matters=[convert.matter(m, version) for m in page],
            next_page_token=encode_token(end, query) if end < len(matching) else "",
            total_size=len(matching),
        )

    async def DiffCatalogVersions(
        self, request: catalog_pb2.DiffCatalogVersionsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.DiffCatalogVersionsResponse:
        fields.raise_if_any(
            "the versions are malformed",
            fields.text(request.from_version, "from_version", fields.MAX_VERSION, required=True),
            fields.text(request.to_version, "to_version", fields.MAX_VERSION, required=True),
        )
        snapshot, now = self.registry.snapshot, self.clock()
        old = snapshot.version(request.from_version, now).document
        new = snapshot.version(request.to_version, now).document
        return catalog_pb2.DiffCatalogVersionsResponse(diff=convert.diff(diff_catalogs(old, new)))

    async def PublishRegionCatalog(
        self, request: catalog_pb2.PublishRegionCatalogRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.PublishRegionCatalogResponse:
        if request.validate_only:
            return (await self._publish_region(request))[0]
        try:
            response, region_code = await self._publish_region(request)
        except BaseException:
            self.events.emit(CatalogPublished("region", activated=False))
            raise
        self.events.emit(
            CatalogPublished(
                "region",
                activated=True,
                action="CatalogService.PublishRegionCatalog",
                region_code=region_code,
            )
        )
        return response

    async def _publish_region(
        self, request: catalog_pb2.PublishRegionCatalogRequest
    ) -> tuple[catalog_pb2.PublishRegionCatalogResponse, str]:
        """The response, and the province whose list it is."""
        prefix, _, rest = request.region_catalog.name.partition("/")
        named_region = rest.partition("/")[0] if prefix == "regions" else ""
        guard.check(authz.PublishRegionCatalog(named_region))
        if len(request.region_catalog.entries) > 200_000:
            raise InvalidRequest(
                "a list has at most 200000 rows",
                field_violations=[
                    FieldViolation("region_catalog.entries", "at most 200000", "TOO_MANY")
                ],
            )
        # tens of thousands of rows: converted in a worker thread, not on the event loop
        reading = await asyncio.to_thread(convert.region_document, request.region_catalog)
        doc = reading.document
        if reading.violations:
            # One pass: the readable rows are checked too, so every problem is named at once.
            report = await self.registry.check_region(doc, rows=reading.rows)
            raise InvalidRequest(
                f"{len(reading.violations)} field(s) of the list are malformed, "
                f"{len(report.errors)} row(s) cannot be routed",
                field_violations=[*reading.violations, *report.errors],
            )
        result = await self.registry.publish_region(doc, validate_only=request.validate_only)
        response = catalog_pb2.PublishRegionCatalogResponse(
            region_catalog=await asyncio.to_thread(convert.region_catalog, result.index),
            warnings=[
                catalog_pb2.RegionCatalogWarning(
                    entry_index=w.entry_index,
                    field=w.field,
                    reason=w.reason,
                    description=w.description,
                )
                for w in result.warnings
            ],
        )
        return response, doc.region_code

    def _resolve(
        self, snapshot: CatalogSnapshot, request: catalog_pb2.ResolveLocalCodeRequest
    ) -> Resolution:
        # each read of a message field builds a new str: read each once
        region_code, local_code = request.region_code, request.local_code
        national_code, version = request.national_code, request.catalog_version
        fields.raise_if_any(
            "the request is malformed",
            fields.region_code(region_code, "region_code"),
            fields.text(local_code, "local_code", MAX_LOCAL_CODE, required=True),
            fields.matter_code(national_code, "national_code", snapshot.provinces),
            fields.text(version, "catalog_version", fields.MAX_VERSION),
        )
        started = time.perf_counter()
        try:
            resolution = resolve(
                snapshot,
                region_code,
                local_code,
                now=self.clock(),
                national_code=national_code,
                version=version,
            )
        except TongbanError as exc:
            self.events.emit(CodeResolved(exc.reason, time.perf_counter() - started))
            raise
        self.events.emit(CodeResolved("resolved", time.perf_counter() - started))
        return resolution

    async def ResolveLocalCode(  # type: ignore[override]  # serialized: see `add_catalog_servicer`
        self, request: catalog_pb2.ResolveLocalCodeRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        """The `ResolveLocalCodeResponse`, already serialized (`wire.resolve_response`)."""
        return wire.resolve_response(self._resolve(self.registry.snapshot, request))

    async def BatchResolveLocalCodes(
        self, request: catalog_pb2.BatchResolveLocalCodesRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.BatchResolveLocalCodesResponse:
        if not request.requests or len(request.requests) > MAX_BATCH:
            raise InvalidRequest(
                f"a batch holds 1 to {MAX_BATCH} requests",
                field_violations=[
                    FieldViolation("requests", f"1 to {MAX_BATCH} items", "BAD_SIZE")
                ],
            )
        snapshot = self.registry.snapshot
        results = []
        for item in request.requests:
            try:
                resolution = self._resolve(snapshot, item)
            except TongbanError as exc:
                results.append(
                    catalog_pb2.BatchResolveResult(
                        error_reason=exc.reason, error_message=exc.message
                    )
                )
            else:
                results.append(
                    catalog_pb2.BatchResolveResult(resolved=convert.resolved(resolution))
                )
        return catalog_pb2.BatchResolveLocalCodesResponse(results=results)

    async def TranslateLocalCode(
        self, request: catalog_pb2.TranslateLocalCodeRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.TranslateLocalCodeResponse:
        snapshot, now = self.registry.snapshot, self.clock()
        fields.raise_if_any(
            "the request is malformed",
            fields.region_code(request.from_region_code, "from_region_code"),
            fields.text(request.local_code, "local_code", MAX_LOCAL_CODE, required=True),
            fields.region_code(request.to_region_code, "to_region_code"),
            fields.matter_code(request.national_code, "national_code", snapshot.provinces),
            fields.text(request.catalog_version, "catalog_version", fields.MAX_VERSION),
        )
        started = time.perf_counter()
        try:
            source = resolve(
                snapshot,
                request.from_region_code,
                request.local_code,
                now=now,
                national_code=request.national_code,
                version=request.catalog_version,
            )
        except TongbanError as exc:
            self.events.emit(CodeResolved(exc.reason, time.perf_counter() - started))
            raise
        self.events.emit(CodeResolved("resolved", time.perf_counter() - started))
        found = targets(snapshot, source, request.to_region_code, now=now)
        return catalog_pb2.TranslateLocalCodeResponse(
            source=convert.resolved(source), targets=[convert.resolved(t) for t in found]
        )

    async def GetTheme(
        self, request: catalog_pb2.GetThemeRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GetThemeResponse:
        named, code = _child_name(request.name, "themes", MAX_THEME_CODE)
        record = self.registry.snapshot.version(named, self.clock())
        version = record.document.version
        found = record.document.themes.get(code)
        if found is None:
            raise ThemeNotFound(
                f"catalog version {version} has no theme {code}", metadata={"version": version}
            )
        return catalog_pb2.GetThemeResponse(theme=convert.theme(found, version))

    async def ListThemes(
        self, request: catalog_pb2.ListThemesRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ListThemesResponse:
        snapshot, now = self.registry.snapshot, self.clock()
        record = snapshot.version(_version_from_name(request.parent, "parent"), now)
        version = record.document.version
        size = page_size(request.page_size, default=50, maximum=500)
        query = {"m": "ListThemes", "v": version}
        start = int(decode_token(request.page_token, query) or 0)
        themes = list(record.document.themes.values())
        page = themes[start : start + size]
        end = start + len(page)
        return catalog_pb2.ListThemesResponse(
            themes=[convert.theme(t, version) for t in page],
            next_page_token=encode_token(end, query) if end < len(themes) else "",
            total_size=len(themes),
        )


SERVICE = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


class _Handlers:
    """What the generated registration hands a server, kept instead of served."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.handlers.update(handlers)


def pass_through(data: bytes) -> bytes:
    """The serializer of a handler that returns its answer already serialized."""
    return data


def add_catalog_servicer(servicer: CatalogServicer, server: grpc.aio.Server) -> None:
    """Serves `servicer` as the generated `add_CatalogServiceServicer_to_server` does, except
    that ResolveLocalCode's answer goes to the wire as the bytes its handler wrote."""
    kept = _Handlers()
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(servicer, kept)
    handlers = dict(kept.handlers)
    handlers["ResolveLocalCode"] = handlers["ResolveLocalCode"]._replace(
        response_serializer=pass_through
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
