"""The OpenAPI 3.1 description of the HTTP/JSON API, written from the API's descriptor set.

Why here: the maintained generator (grpc-gateway's `protoc-gen-openapiv2`) is a Go program that
no package registry this project installs from ships as a binary, and a Python project's
`make test` should not build a Go toolchain; the Python packages of that name carry only its
option messages. So this module reads the same facts it reads, the descriptor set
(`gateway/api/v1/descriptors.binpb`, with source comments), and `make proto` writes
`deploy/envoy/openapi.json` from it (a test checks it is fresh and valid).

What it states, in plain words:

- One operation per RPC of the public services with a `google.api.http` rule, at the rule's
  path. A path variable whose pattern spans segments (`{name=applications/*}`) is written out
  as its literal segments and one parameter per `*`, named after the collection
  (`/v1/applications/{application}`); the request field is the joined path.
- Requests: fields bound in the path are path parameters; with `body: "*"` the rest is the
  JSON body; without a body, every other top-level field is a query parameter.
- Messages as proto3 JSON maps them (the edge proxy prints with `always_print_primitive_fields`):
  lowerCamelCase names, 64-bit integers as strings, enums by name, `Timestamp` as RFC 3339,
  `Any` as an object with `@type`. Unknown properties are not allowed. A field documented
  "Required." is required in a request; "Output only." is read-only.
- Server streaming answers a JSON array of its messages (as the transcoder streams them).
- Every error answers the HTTP status of its gRPC code with a `google.rpc.Status` body.
- Callers authenticate with a client certificate of the federation (`mutualTLS`).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from gateway.tools.edge import PUBLIC_SERVICES

STATUS = "google.rpc.Status"

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS: dict[int, dict[str, Any]] = {
    _F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _F.TYPE_FLOAT: {"type": "number", "format": "float"},
    _F.TYPE_INT64: {"type": "string", "format": "int64"},
    _F.TYPE_UINT64: {"type": "string", "format": "uint64"},
    _F.TYPE_INT32: {"type": "integer", "format": "int32"},
    _F.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    _F.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    _F.TYPE_BOOL: {"type": "boolean"},
    _F.TYPE_STRING: {"type": "string"},
    _F.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
    _F.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    _F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _F.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    _F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SINT64: {"type": "string", "format": "int64"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
}
_VARIABLE = re.compile(r"\{([a-z0-9_.]+)(?:=([^}]*))?\}")

# Source-code-info path numbers (descriptor.proto's field numbers).
_MESSAGE_TYPE, _ENUM_TYPE, _SERVICE = 4, 5, 6
_FIELD, _NESTED, _NESTED_ENUM, _METHOD, _ENUM_VALUE = 2, 3, 4, 2, 2


class _Index:
    """Every message and enum of the set by full name, with its comments."""

    def __init__(self, files: Sequence[descriptor_pb2.FileDescriptorProto]) -> None:
        self.messages: dict[str, tuple[descriptor_pb2.DescriptorProto, tuple[int, ...], str]] = {}
        self.enums: dict[str, tuple[descriptor_pb2.EnumDescriptorProto, tuple[int, ...], str]] = {}
        self.comments: dict[tuple[str, tuple[int, ...]], str] = {}
        self.files = {f.name: f for f in files}
        for file in files:
            for location in file.source_code_info.location:
                if location.leading_comments:
                    self.comments[(file.name, tuple(location.path))] = location.leading_comments
            prefix = f".{file.package}" if file.package else ""
            for i, message in enumerate(file.message_type):
                self._add_message(file.name, prefix, message, (_MESSAGE_TYPE, i))
            for i, enum in enumerate(file.enum_type):
                self.enums[f"{prefix}.{enum.name}"] = (enum, (_ENUM_TYPE, i), file.name)

    def _add_message(
        self, file: str, prefix: str, message: descriptor_pb2.DescriptorProto, path: tuple[int, ...]
    ) -> None:
        name = f"{prefix}.{message.name}"
        self.messages[name] = (message, path, file)
        for i, nested in enumerate(message.nested_type):
            self._add_message(file, name, nested, (*path, _NESTED, i))
        for i, enum in enumerate(message.enum_type):
            self.enums[f"{name}.{enum.name}"] = (enum, (*path, _NESTED_ENUM, i), file)

    def comment(self, file: str, path: tuple[int, ...]) -> str:
        """The leading comment at `path`, tidied: one space after each line break removed."""
        text = self.comments.get((file, path), "")
        return "\n".join(line.removeprefix(" ") for line in text.strip("\n").split("\n")).strip()


def _ref(full_name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{full_name.lstrip('.')}"}


class _Schemas:
    """The component schemas, added as operations reach them."""

    def __init__(self, index: _Index) -> None:
        self.index = index
        self.schemas: dict[str, dict[str, Any]] = {}

    def type_of(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        if field.type == _F.TYPE_MESSAGE:
            if field.type_name.lstrip(".") in _WELL_KNOWN:
                return dict(_WELL_KNOWN[field.type_name.lstrip(".")])
            self.message(field.type_name)
            return _ref(field.type_name)
        if field.type == _F.TYPE_ENUM:
            self.enum(field.type_name)
            return _ref(field.type_name)
        return dict(_SCALARS[field.type])

    def field(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        if field.label == _F.LABEL_REPEATED and field.type == _F.TYPE_MESSAGE:
            entry = self.index.messages.get(field.type_name)
            if entry is not None and entry[0].options.map_entry:
                value = next(f for f in entry[0].field if f.name == "value")
                return {"type": "object", "additionalProperties": self.type_of(value)}
        item = self.type_of(field)
        return {"type": "array", "items": item} if field.label == _F.LABEL_REPEATED else item

    def message(self, type_name: str, *, leave_out: frozenset[str] = frozenset()) -> str:
        """Adds the message's schema (less the fields `leave_out`) and returns its name."""
        full = type_name.lstrip(".")
        name = full if not leave_out else f"{full}.Body"
        if name in self.schemas:
            return name
        message, path, file = self.index.messages[f".{full}"]
        schema: dict[str, Any] = {"type": "object", "additionalProperties": False}
        self.schemas[name] = schema  # before the fields: messages may refer to themselves
        description = self.index.comment(file, path)
        if leave_out:
            description += f"\n\nThe request body: `{full}` without its path fields."
        if description:
            schema["description"] = description.strip()
        properties: dict[str, Any] = {}
        required: list[str] = []
        oneofs: dict[int, list[str]] = {}
        for i, field in enumerate(message.field):
            if field.name in leave_out:
                continue
            prop = self.field(field)
            comment = self.index.comment(file, (*path, _FIELD, i))
            if comment:
                prop["description"] = comment
            if comment.startswith("Output only."):
                prop["readOnly"] = True
            if comment.startswith("Required.") and not field.HasField("oneof_index"):
                required.append(field.json_name)
            if field.HasField("oneof_index") and not field.proto3_optional:
                oneofs.setdefault(field.oneof_index, []).append(field.json_name)
            properties[field.json_name] = prop
        schema["properties"] = properties
        if required:
            schema["required"] = required
        for index, names in oneofs.items():
            oneof = message.oneof_decl[index].name
            schema["description"] = (
                schema.get("description", "")
                + f"\n\nAt most one of {', '.join(f'`{n}`' for n in names)} (`{oneof}`)."
            ).strip()
        return name

    def enum(self, type_name: str) -> None:
        full = type_name.lstrip(".")
        if full in self.schemas:
            return
        enum, path, file = self.index.enums[f".{full}"]
        lines = [self.index.comment(file, path), ""]
        for i, value in enumerate(enum.value):
            text = self.index.comment(file, (*path, _ENUM_VALUE, i)).replace("\n", " ")
            lines.append(f"- `{value.name}`: {text}")
        self.schemas[full] = {
            "type": "string",
            "enum": [value.name for value in enum.value],
            "description": "\n".join(lines).strip(),
        }


def _parameter_name(collection: str) -> str:
    """`applications` → `application`, `catalogVersions` → `catalogVersion`."""
    return collection.removesuffix("s") if collection.endswith("s") else f"{collection}Id"


def _expand(template: str) -> tuple[str, dict[str, tuple[list[str], str]]]:
    """The OpenAPI path of an http rule's template, and for each request field bound in it
    the parameters standing for it (in path order) and what it is made of."""
    bound: dict[str, tuple[list[str], str]] = {}

    def replace(match: re.Match[str]) -> str:
        field, pattern = match.group(1), match.group(2)
        if pattern is None:
            bound[field] = ([field], "{" + field + "}")
            return "{" + field + "}"
        segments = []
        previous = ""
        names: list[str] = []
        for segment in pattern.split("/"):
            if segment == "*":
                name = _parameter_name(previous)
                names.append(name)
                segments.append("{" + name + "}")
            else:
                segments.append(segment)
            previous = segment
        expanded = "/".join(segments)
        bound[field] = (names, expanded)
        return expanded

    return _VARIABLE.sub(replace, template), bound


def _rule(method: descriptor_pb2.MethodDescriptorProto) -> tuple[str, str, str] | None:
    """(HTTP method, path template, body) of a method's http rule; None when it has none."""
    if not method.options.HasExtension(annotations_pb2.http):
        return None
    rule: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]
    verb = rule.WhichOneof("pattern")
    if verb is None or verb == "custom":
        return None
    return verb, getattr(rule, verb), rule.body


def _operations(index: _Index, schemas: _Schemas) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for file in index.files.values():
        for s, service in enumerate(file.service):
            full_service = f"{file.package}.{service.name}"
            if full_service not in PUBLIC_SERVICES:
                continue
            for m, method in enumerate(service.method):
                rule = _rule(method)
                if rule is None:
                    continue
                verb, template, body = rule
                path, bound = _expand(template)
                request, request_path, request_file = index.messages[method.input_type]
                parameters: list[dict[str, Any]] = []
                for bound_field, (names, made_of) in bound.items():
                    for name in names:
                        parameters.append(
                            {
                                "name": name,
                                "in": "path",
                                "required": True,
                                "schema": {"type": "string"},
                                "description": f"The request's `{bound_field}` is `{made_of}`.",
                            }
                        )
                path_roots = {name.split(".")[0] for name in bound}
                operation: dict[str, Any] = {
                    "operationId": f"{service.name}_{method.name}",
                    "tags": [service.name],
                    "summary": method.name,
                    "description": index.comment(file.name, (_SERVICE, s, _METHOD, m)),
                }
                if body == "*":
                    leave_out = frozenset(name for name in bound if "." not in name)
                    name = schemas.message(method.input_type, leave_out=leave_out)
                    operation["requestBody"] = {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(name)}},
                    }
                elif not body:
                    for i, field in enumerate(request.field):
                        if field.name in path_roots or field.type == _F.TYPE_MESSAGE:
                            continue
                        parameter: dict[str, Any] = {
                            "name": field.name,
                            "in": "query",
                            "schema": schemas.field(field),
                        }
                        comment = index.comment(request_file, (*request_path, _FIELD, i))
                        if comment:
                            parameter["description"] = comment
                        if comment.startswith("Required."):
                            parameter["required"] = True
                        parameters.append(parameter)
                if parameters:
                    operation["parameters"] = parameters
                response = _ref(schemas.message(method.output_type))
                if method.server_streaming:
                    response = {
                        "type": "array",
                        "items": response,
                        "description": "Streamed: one element per message, as they come.",
                    }
                operation["responses"] = {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": response}},
                    },
                    "default": {
                        "description": (
                            "An error: the HTTP status of its gRPC code, the `google.rpc.Status` "
                            "as the body (one `ErrorInfo`, `BadRequest` for field violations)."
                        ),
                        "content": {"application/json": {"schema": _ref(STATUS)}},
                    },
                }
                yield path, verb, operation


def openapi(files: Sequence[descriptor_pb2.FileDescriptorProto]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the public services in `files` (a descriptor set with
    source info); see the module docstring."""
    index = _Index(files)
    schemas = _Schemas(index)
    schemas.message(f".{STATUS}")
    paths: dict[str, dict[str, Any]] = {}
    for path, verb, operation in _operations(index, schemas):
        paths.setdefault(path, {})[verb] = operation
    tags = []
    for file in index.files.values():
        for s, service in enumerate(file.service):
            if f"{file.package}.{service.name}" in PUBLIC_SERVICES:
                tags.append(
                    {"name": service.name, "description": index.comment(file.name, (_SERVICE, s))}
                )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tongban gateway: HTTP/JSON",
            "version": "v1",
            "description": (
                "The gateway's public gRPC API (`gateway.api.v1`) as the edge proxy serves it "
                "over HTTPS: generated from the protos' `google.api.http` rules. Every call "
                "presents a client certificate of the federation; the caller is the identity "
                "it carries, exactly as over gRPC."
            ),
        },
        "tags": tags,
        "security": [{"federationCertificate": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "federationCertificate": {
                    "type": "mutualTLS",
                    "description": (
                        "A client certificate issued by the federation's CA carrying one "
                        "`spiffe://tongban/...` URI."
                    ),
                }
            },
            "schemas": dict(sorted(schemas.schemas.items())),
        },
    }


def render(descriptor_set: bytes) -> str:
    """The document as written to `deploy/envoy/openapi.json`."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file
    return json.dumps(openapi(files), indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m gateway.tools.openapi DESCRIPTORS OUT` (`make proto` runs it)."""
    descriptors, out = argv if argv is not None else sys.argv[1:]
    Path(out).write_text(render(Path(descriptors).read_bytes()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
