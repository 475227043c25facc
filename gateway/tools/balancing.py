"""The CLI's channel to the gateway: one address, or several replicas balanced call by call.

- `--gateway HOST:PORT` is one target; `--gateway A,B,C` (comma-separated) is a static list
  (gRPC's `ipv4:`/`ipv6:` resolver, host names resolved here) balanced with `round_robin`: each
  call goes to the next replica that is connected, and a replica that is down is skipped.
- Either way a call answered UNAVAILABLE (a replica that went away, a store that is away) is
  retried by the channel, the very same request again: a submission keeps its `request_id`,
  so a retry that reaches another replica finds what the first attempt stored (AIP-155), and
  only UNAVAILABLE is retried (AIP-194).
- Over TLS, every replica is checked against the name of the first address, which their
  certificate must carry (replicas share one identity).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from typing import Any

RETRY_POLICY = {
    "maxAttempts": 5,
    "initialBackoff": "0.2s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
"""Up to 5 attempts, about 3 s of backoff in all: longer than a replica takes to be skipped
or a store's failover to be noticed, shorter than a caller's patience."""


def split_addresses(gateway: str) -> list[tuple[str, int]]:
    """`host:port` items of a comma-separated list (`[v6]:port` for IPv6 literals)."""
    found = []
    for item in filter(None, (part.strip() for part in gateway.split(","))):
        host, colon, port = item.rpartition(":")
        if not colon or not port.isdigit() or not host:
            raise ValueError(f"--gateway: {item!r} is not HOST:PORT")
        found.append((host.removeprefix("[").removesuffix("]"), int(port)))
    if not found:
        raise ValueError("--gateway: no address")
    return found


def _resolve(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ValueError(f"--gateway: cannot resolve {host}: {error}") from None
    return ipaddress.ip_address(infos[0][4][0])


def gateway_channel(gateway: str, *, tls: bool) -> tuple[str, list[tuple[str, Any]]]:
    """The channel target and options for `--gateway` (one address or several)."""
    addresses = split_addresses(gateway)
    config: dict[str, Any] = {"methodConfig": [{"name": [{}], "retryPolicy": RETRY_POLICY}]}
    options: list[tuple[str, Any]] = []
    if len(addresses) == 1:
        target = gateway.strip()
    else:
        config["loadBalancingConfig"] = [{"round_robin": {}}]
        resolved = [(_resolve(host), port) for host, port in addresses]
        versions = {ip.version for ip, _ in resolved}
        if len(versions) != 1:
            raise ValueError("--gateway: all IPv4 or all IPv6 addresses")
        scheme = "ipv4" if versions == {4} else "ipv6"
        target = f"{scheme}:" + ",".join(
            f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}" for ip, port in resolved
        )
        first_host, first_port = addresses[0]
        options.append(("grpc.default_authority", f"{first_host}:{first_port}"))
        if tls:
            options.append(("grpc.ssl_target_name_override", first_host))
    options.append(("grpc.service_config", json.dumps(config)))
    options.append(("grpc.enable_retries", 1))
    return target, options
