"""deploy/: the Kubernetes manifests validate offline, and they agree with the image and config.

The production shape: a namespace, a CloudNativePG `Cluster` (the store), the gateway (three
replicas sharing it, TLS and keys from Secrets) and a demo federation of region stubs, applied
in file-name order. The cluster cannot be reached from here, so everything is checked offline:
built-in kinds against the schemas bundled with kubernetes-validate, the `Cluster` against the
documented subset in `cnpg_cluster_v1.schema.json`, and the wiring between them (what the
config names, what is mounted where, which Service reaches which pods) by reading the
manifests with the gateway's and the stubs' own config parsers.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import pytest
import yaml
from conftest import start_world
from jsonschema import Draft202012Validator

from gateway.app import probe
from gateway.app.config import GatewayConfig, load_config
from gateway.tools.edge import K8S_SETTINGS
from region_stubs.config import StubConfig, parse_args

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
README = ROOT / "README.md"
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


def pod_of(name: str) -> dict[str, Any]:
    """The pod template's spec of a Deployment."""
    spec: dict[str, Any] = find("Deployment", name)["spec"]["template"]["spec"]
    return spec


def gateway_environment() -> dict[str, str]:
    """The `TONGBAN_*` keys the gateway container gets (its ConfigMap and literal env)."""
    (container,) = pod_of("tongban-gateway")["containers"]
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environment.update(find("ConfigMap", source["configMapRef"]["name"])["data"])
    environment.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return environment


def gateway_config() -> GatewayConfig:
    """The gateway's configuration, parsed by the gateway's own `load_config`."""
    return load_config(gateway_environment())


def stub_config(doc: dict[str, Any]) -> StubConfig:
    """A region stub's configuration, parsed by the stub's own command line."""
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    command, *argv = container["args"]
    assert command == "region-stub"
    return parse_args(argv, {})


def stubs() -> list[dict[str, Any]]:
    return [
        doc
        for doc in documents()
        if doc["kind"] == "Deployment"
        and doc["spec"]["template"]["spec"]["containers"][0]["args"][0] == "region-stub"
    ]


def the_cluster() -> dict[str, Any]:
    (cluster,) = [doc for doc in documents() if doc["kind"] == "Cluster"]
    return cluster


def mounted_from(pod: dict[str, Any], path: str | Path) -> tuple[str, str, str]:
    """(kind, name, key) of the Secret or ConfigMap key that the file at `path` is.

    The file must sit directly in a read-only directory mount of the pod's only container (a
    subPath mount would never see a rotated Secret).
    """
    (container,) = pod["containers"]
    file = PurePosixPath(path)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for mount in container["volumeMounts"]:
        if PurePosixPath(mount["mountPath"]) != file.parent:
            continue
        assert "subPath" not in mount
        assert mount.get("readOnly") is True, mount
        volume = volumes[mount["name"]]
        for kind, field, name_field in (
            ("Secret", "secret", "secretName"),
            ("ConfigMap", "configMap", "name"),
        ):
            if field in volume:
                source = volume[field]
                keys = {item["path"]: item["key"] for item in source.get("items", [])}
                key = keys[file.name] if "items" in source else file.name
                return kind, source[name_field], key
        raise AssertionError(f"{path} is on {mount['name']}, not a Secret or a ConfigMap")
    raise AssertionError(f"nothing is mounted at {file.parent}")


def served_over_tls(doc: dict[str, Any]) -> set[int]:
    """The ports a Deployment's process serves over TLS, by its own configuration."""
    if doc["metadata"]["name"] == "tongban-edge":  # Envoy: HTTPS only (test_edge_shape.py)
        return {K8S_SETTINGS.listen_port}
    args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
    if args[0] == "gateway":
        config = gateway_config()
        return {config.port} if config.tls is not None else set()
    stub = stub_config(doc)
    return {stub.port} if stub.tls is not None else set()


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


def test_what_a_pod_needs_is_applied_before_it_generated_by_the_store_or_documented() -> None:
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index("### Deployment") :]
    section = section[: section.index("\n## ")]
    docs = documents()
    for i, doc in enumerate(docs):
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        needed = [
            ("ConfigMap", s["configMapRef"]["name"])
            for c in pod["containers"]
            for s in c.get("envFrom", [])
        ]
        for volume in pod["volumes"]:
            if "secret" in volume:
                needed.append(("Secret", volume["secret"]["secretName"]))
            if "configMap" in volume:
                needed.append(("ConfigMap", volume["configMap"]["name"]))
        before = docs[:i]
        generated = {
            f"{d['metadata']['name']}-{suffix}"
            for d in before
            if d["kind"] == "Cluster"
            for suffix in ("app", "ca")
        }
        for kind, name in needed:
            applied = any(d["kind"] == kind and d["metadata"]["name"] == name for d in before)
            by_store = kind == "Secret" and name in generated
            documented = f"`{name}`" in section
            assert applied or by_store or documented, (doc["metadata"]["name"], kind, name)


def test_the_validator_rejects_a_broken_manifest() -> None:
    doc = find("Deployment", "tongban-gateway")
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_container_is_non_root_with_requests_limits_and_probes_it_can_answer() -> None:
    deployments = [doc for doc in documents() if doc["kind"] == "Deployment"]
    assert deployments
    for doc in deployments:
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        assert doc["spec"]["selector"]["matchLabels"].items() <= (
            doc["spec"]["template"]["metadata"]["labels"].items()
        )
        # kubelet's gRPC probe speaks plaintext only: on a TLS port it would never pass.
        tls_ports = served_over_tls(doc)
        for container in pod["containers"]:
            assert set(container["resources"]) == {"requests", "limits"}
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            for name in ("readinessProbe", "livenessProbe"):
                check = container[name]
                assert "grpc" in check or "tcpSocket" in check
                if "grpc" in check:
                    assert check["grpc"]["port"] not in tls_ports, (doc["metadata"]["name"], name)


def test_gateway_probes_use_the_plaintext_health_port_and_drain_fits_the_grace() -> None:
    config = gateway_config()
    pod = pod_of("tongban-gateway")
    (container,) = pod["containers"]
    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe_name]["grpc"]["port"] == config.health_port
    # Every replica shares the store: a liveness check on it would restart them all at once
    # during a database failover. Liveness asks about the process alone.
    assert container["livenessProbe"]["grpc"].get("service", "") == ""
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "grpc": config.port,
        "metrics": config.metrics_port,
        "health": config.health_port,
    }
    assert pod["terminationGracePeriodSeconds"] > config.probe_interval + config.grace


def test_gateway_runs_three_replicas_rolling_one_at_a_time_within_a_budget() -> None:
    deployment = find("Deployment", "tongban-gateway")["spec"]
    assert deployment["replicas"] == 3
    strategy = deployment["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] in (0, 1)
    assert strategy["rollingUpdate"]["maxSurge"] == 1
    budget = find("PodDisruptionBudget", "tongban-gateway")["spec"]
    assert budget["selector"]["matchLabels"].items() <= (
        deployment["template"]["metadata"]["labels"].items()
    )
    if "minAvailable" in budget:
        kept = budget["minAvailable"]
    else:
        kept = deployment["replicas"] - budget["maxUnavailable"]
    assert kept >= 2


def test_gateway_replicas_spread_across_nodes_and_zones() -> None:
    template = find("Deployment", "tongban-gateway")["spec"]["template"]
    constraints = {c["topologyKey"]: c for c in template["spec"]["topologySpreadConstraints"]}
    assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= set(constraints)
    for constraint in constraints.values():
        assert constraint["maxSkew"] == 1
        assert constraint["labelSelector"]["matchLabels"].items() <= (
            template["metadata"]["labels"].items()
        )
    assert constraints["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"


def test_gateway_keeps_no_state_of_its_own_and_writes_only_to_scratch_volumes() -> None:
    # State lives in PostgreSQL: no claim for the gateway, nothing but scratch and Secrets.
    assert [d for d in documents() if d["kind"] == "PersistentVolumeClaim"] == []
    pod = pod_of("tongban-gateway")
    (container,) = pod["containers"]
    kinds = {v["name"]: next(k for k in v if k != "name") for v in pod["volumes"]}
    assert set(kinds.values()) <= {"emptyDir", "secret", "configMap"}
    scratch = [
        PurePosixPath(m["mountPath"])
        for m in container["volumeMounts"]
        if kinds[m["name"]] == "emptyDir"
    ]
    config = gateway_config()
    for written in (config.data_dir, config.audit_path, Path("/tmp")):
        assert any(PurePosixPath(written).is_relative_to(d) for d in scratch), written


def test_gateway_tls_and_keys_are_files_from_secrets_and_a_configmap() -> None:
    config = gateway_config()
    pod = pod_of("tongban-gateway")
    assert config.tls is not None, "the production gateway serves mTLS"
    tls = {
        mounted_from(pod, path) for path in (config.tls.ca_cert, config.tls.cert, config.tls.key)
    }
    assert tls == {
        ("Secret", "tongban-gateway-tls", "ca.crt"),
        ("Secret", "tongban-gateway-tls", "tls.crt"),
        ("Secret", "tongban-gateway-tls", "tls.key"),
    }
    assert config.standards_keys
    for body, path in config.standards_keys.items():
        kind, _, key = mounted_from(pod, path)
        assert (kind, key) == ("ConfigMap", f"{body}.pub.pem")
    assert config.audit_key_file is not None
    assert mounted_from(pod, config.audit_key_file) == ("Secret", "tongban-audit-key", "audit.key")
    # A Secret volume names the keys it projects: the operator's CA Secret also holds its key.
    for volume in pod["volumes"]:
        if "secret" in volume:
            assert volume["secret"]["items"], volume["name"]
            assert volume["secret"]["defaultMode"] == 0o440, volume["name"]


def test_the_store_is_the_clusters_read_write_service_as_its_owner_over_verified_tls() -> None:
    cluster = the_cluster()
    name = cluster["metadata"]["name"]
    initdb = cluster["spec"]["bootstrap"]["initdb"]
    # Without a secret of ours the operator generates `<cluster>-app` for the owner.
    assert "secret" not in initdb
    assert cluster["spec"]["instances"] == 3
    environment = gateway_environment()
    url = urlsplit(environment["TONGBAN_STORE"])
    assert url.scheme == "postgresql"
    assert url.hostname == f"{name}-rw"
    assert url.port == 5432
    assert url.username == initdb["owner"]
    assert url.password is None, "the password comes from a file, never the URL"
    assert url.path == f"/{initdb['database']}"
    query = parse_qs(url.query)
    assert query["sslmode"] == ["verify-full"]
    pod = pod_of("tongban-gateway")
    assert mounted_from(pod, query["sslrootcert"][0]) == ("Secret", f"{name}-ca", "ca.crt")
    password = environment["TONGBAN_STORE_PASSWORD_FILE"]
    assert mounted_from(pod, password) == ("Secret", f"{name}-app", "password")


def test_the_gateway_reads_the_store_the_manifests_give_it() -> None:
    environment = gateway_environment()
    without = {k: v for k, v in environment.items() if not k.startswith("TONGBAN_STORE")}
    assert load_config(environment) != load_config(without)


def test_every_configured_province_is_a_service_of_the_federation() -> None:
    config = gateway_config()
    assert config.regions
    for code, address in config.regions.items():
        host, _, port = address.partition(":")
        service = find("Service", host)
        assert int(port) in [p["port"] for p in service["spec"]["ports"]]
        stub = find("Deployment", host)
        assert stub_config(stub).region_code == code


def test_the_demo_federation_reports_to_the_gateway_service_over_mtls() -> None:
    config = gateway_config()
    gateway = find("Deployment", "tongban-gateway")["spec"]["template"]
    (container,) = gateway["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert stubs()
    for doc in stubs():
        stub = stub_config(doc)
        assert stub.gateway_address is not None
        host, _, port = stub.gateway_address.partition(":")
        service = find("Service", host)
        assert service["spec"]["selector"].items() <= gateway["metadata"]["labels"].items()
        (target,) = [p["targetPort"] for p in service["spec"]["ports"] if p["port"] == int(port)]
        assert ports.get(target, target) == config.port
        # The image holds the data where the gateway reads it, not beside the installed package.
        standards = config.standards_dir
        assert (
            stub.implementation_list == standards / "implementations" / f"{stub.region_code}.json"
        )
        assert stub.catalog_dir == standards / "catalog"
        # The gateway calls the provinces with its mTLS identity: a plaintext stub would fail.
        assert stub.tls is not None
        tls = stub.tls
        files = (tls.ca_cert, tls.cert, tls.key, tls.client_cert, tls.client_key)
        pod = doc["spec"]["template"]["spec"]
        assert {mounted_from(pod, f)[:2] for f in files} == {
            ("Secret", f"tongban-region-{stub.region_code}-tls")
        }


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
