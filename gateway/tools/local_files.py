"""What `tongban up` keeps in its data directory besides the store: the development standards
key pair its gateways trust, and, while it runs, `federation.json`, which says where everything
is, so that other commands find a province's stub, the PKI and the key from the data directory
alone. Light to import: the CLI reads these without loading the server.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.catalog import signing
from gateway.security.pki import DEV_STANDARDS_BODY

DEV_KEYS_DIR = "keys"
"""Where, under the data directory, the development standards key pair is kept."""
FEDERATION_FILE = "federation.json"
"""Where, under the data directory, a running federation says where everything is."""


@dataclasses.dataclass(frozen=True)
class StandardsKey:
    """A standards body's signing key pair on disk."""

    body: str
    """The standards body's name (the JWS `kid`)."""
    private_key: Path
    public_key: Path


def dev_standards_key(data_dir: Path, body: str = DEV_STANDARDS_BODY) -> StandardsKey:
    """The development standards key pair under `data_dir/keys`: made when either half is
    missing, else reused (a new pair would orphan publications signed with the old one)."""
    keys = data_dir / DEV_KEYS_DIR
    pair = StandardsKey(body, keys / f"{body}.key.pem", keys / f"{body}.pub.pem")
    if pair.private_key.exists() and pair.public_key.exists():
        return pair
    keys.mkdir(parents=True, exist_ok=True)
    key = signing.generate_private_key()
    pair.private_key.write_bytes(signing.private_pem(key))
    pair.private_key.chmod(0o600)
    pair.public_key.write_bytes(signing.public_pem(key))
    return pair


def write_federation(
    data_dir: Path,
    *,
    gateways: Sequence[str],
    stubs: Mapping[str, str],
    pki: Path | None,
    standards_key: StandardsKey,
) -> Path:
    """Writes `DATA_DIR/federation.json`: where the gateways and stubs listen, and the PKI and
    standards key they use."""
    path = data_dir / FEDERATION_FILE
    record = {
        "gateways": list(gateways),
        "regions": dict(sorted(stubs.items())),
        "pki": None if pki is None else str(pki),
        "standards_key": {
            "body": standards_key.body,
            "private_key": str(standards_key.private_key),
            "public_key": str(standards_key.public_key),
        },
    }
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def read_federation(data_dir: Path) -> dict[str, Any] | None:
    """What a running `tongban up` wrote under `data_dir`; None when none runs there."""
    try:
        data = json.loads((data_dir / FEDERATION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
