"""deploy/: the Kubernetes manifests validate offline, and they agree with the image and config."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import start_world
from jsonschema import Draft202012Validator

from gateway.app import probe
from gateway.app.config import load_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
KUBERNETES_VERSION = "1.30.0"
CNPG_SCHEMA = Path(__file__).with_name("cnpg_cluster_v1.schema.json")
"""The documented subset of CloudNativePG's `Cluster` that the manifests rely on."""


def documents() -> list[dict[str, Any]]:
    """Every manifest in the order `kubectl apply -f deploy/k8s/` sends them: files by name,
    documents in file order."""
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def is_cloudnativepg(doc: dict[str, Any]) -> bool:
    """A custom resource of the CloudNativePG operator, which the bundled schemas do not know."""
    return str(doc["apiVersion"]).startswith("postgresql.cnpg.io/")


def find(kind: str, name: str) -> dict[str, Any]:
    for doc in documents():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name}")


def index_of(kind: str, name: str) -> int:
    """Where an object comes in the apply order."""
    for i, doc in enumerate(documents()):
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return i
    raise AssertionError(f"no {kind} {name}")


def cluster_validator() -> Draft202012Validator:
    schema = json.loads(CNPG_SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.mark.parametrize(
    "doc",
    [d for d in documents() if not is_cloudnativepg(d)],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_manifest_validates_against_the_bundled_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_cloudnativepg_object_is_a_cluster_valid_against_the_documented_subset() -> None:
    clusters = [d for d in documents() if is_cloudnativepg(d)]
    assert clusters
    validator = cluster_validator()
    for doc in clusters:
        assert [e.message for e in validator.iter_errors(doc)] == []
        # The core/v1 types the Cluster embeds, checked by the bundled schema inside a Pod.
        spec = doc["spec"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": doc["metadata"]["name"]},
            "spec": {
                "containers": [
                    {
                        "name": "postgres",
                        "image": spec["imageName"],
                        "resources": spec.get("resources", {}),
                    }
                ],
                "topologySpreadConstraints": spec.get("topologySpreadConstraints", []),
            },
        }
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "storage", "sise"), "20Gi"),
        (("spec", "bootstrap", "initdb", "encodingg"), "UTF8"),
        (("spec", "instances"), "3"),
        (("spec", "postgresql", "parameters", "max_connections"), 200),
        (("spec", "affinity", "podAntiAffinityType"), "always"),
        # Documented, but not in the subset: a field we start using is checked first.
        (("spec", "walStorage"), {"size": "5Gi"}),
    ],
    ids=["unknown", "unknown-nested", "type", "unquoted-parameter", "enum", "unlisted"],
)
def test_the_cluster_schema_rejects_what_the_reference_does_not_allow(
    path: tuple[str, ...], value: object
) -> None:
    doc = find("Cluster", "tongban-pg")
    validator = cluster_validator()
    assert validator.is_valid(doc)
    *parents, leaf = path
    node = doc
    for key in parents:
        node = node[key]
    node[leaf] = value
    assert not validator.is_valid(doc)


def test_the_files_are_numbered_in_apply_order_and_the_namespace_comes_first() -> None:
    names = [path.name for path in sorted(K8S.glob("*.yaml"))]
    assert names
    assert all(re.fullmatch(r"\d\d-[a-z-]+\.yaml", name) for name in names), names
    docs = documents()
    namespaces = [i for i, doc in enumerate(docs) if doc["kind"] == "Namespace"]
    namespaced = [i for i, doc in enumerate(docs) if "namespace" in doc["metadata"]]
    assert namespaces
    assert namespaced
    assert max(namespaces) < min(namespaced)
    # The gateway's pods mount the Secrets the operator generates for the store.
    assert index_of("Cluster", "tongban-pg") < index_of("Deployment", "tongban-gateway")


def test_the_validator_rejects_a_broken_manifest() -> None:
    doc = find("Deployment", "tongban-gateway")
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_container_is_non_root_with_requests_limits_and_grpc_probes() -> None:
    for doc in documents():
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert doc["spec"]["selector"]["matchLabels"].items() <= (
            doc["spec"]["template"]["metadata"]["labels"].items()
        )
        for container in pod["containers"]:
            assert set(container["resources"]) == {"requests", "limits"}
            assert "grpc" in container["readinessProbe"]
            assert "grpc" in container["livenessProbe"]


def test_gateway_probes_use_the_plaintext_health_port_and_drain_fits_the_grace() -> None:
    config = load_config(find("ConfigMap", "tongban-gateway")["data"])
    pod = find("Deployment", "tongban-gateway")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe_name]["grpc"]["port"] == config.health_port
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "grpc": config.port,
        "metrics": config.metrics_port,
        "health": config.health_port,
    }
    assert pod["terminationGracePeriodSeconds"] > config.probe_interval + config.grace
    budget = find("PodDisruptionBudget", "tongban-gateway")
    assert budget["spec"]["selector"]["matchLabels"].items() <= (
        find("Deployment", "tongban-gateway")["spec"]["template"]["metadata"]["labels"].items()
    )


def test_every_configured_province_is_a_service_of_the_federation() -> None:
    config = load_config(find("ConfigMap", "tongban-gateway")["data"])
    assert config.regions
    for code, address in config.regions.items():
        host, _, port = address.partition(":")
        service = find("Service", host)
        assert int(port) in [p["port"] for p in service["spec"]["ports"]]
        stub = find("Deployment", host)
        assert f"--region={code}" in stub["spec"]["template"]["spec"]["containers"][0]["args"]


def test_dockerfile_is_slim_non_root_with_a_healthcheck() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    bases = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert bases
    assert all(base.endswith("-slim") for base in bases)
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users
    assert users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK .*\n?.*gateway\.app\.probe", text, re.MULTILINE)
    for source in re.findall(r"^COPY\s+(?!--from)(.+)\s+\S+$", text, re.MULTILINE):
        for item in source.split():
            assert (ROOT / item).exists(), item


async def test_the_healthcheck_probe_answers(tmp_path: Path) -> None:
    async with start_world(tmp_path, regions=(), health_port=0) as world:
        address = f"{world.gateway.config.host}:{world.gateway.health_port}"
        assert await probe.check(address)
        assert await probe.check(address, "tongban.store")
        assert not await probe.check(address, "no.such.service")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    assert not await probe.check(closed, timeout=0.5)
    assert probe.main([]) == 2
