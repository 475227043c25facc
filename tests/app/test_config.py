"""The security keys of the gateway's configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app.config import DEFAULT_MAX_RECEIVE_BYTES, ConfigError, load_config
from gateway.security.ratelimit import RateLimit
from gateway.security.tls import ServerTlsFiles


def test_tls_is_required_unless_insecure_is_explicit() -> None:
    with pytest.raises(ConfigError, match="TLS is required"):
        load_config({})
    with pytest.raises(ConfigError, match="go together"):
        load_config({"TONGBAN_TLS_CA": "ca.pem"})
    assert load_config({"TONGBAN_INSECURE": "true"}).tls is None


def test_security_keys() -> None:
    config = load_config(
        {
            "TONGBAN_TLS_CA": "ca.pem",
            "TONGBAN_TLS_CERT": "gw.pem",
            "TONGBAN_TLS_KEY": "gw.key",
            "TONGBAN_DENY_SERIALS": "3A:F1, 0x10,255",
            "TONGBAN_RATE_LIMITS": "SubmitApplication=5/10",
            "TONGBAN_MAX_CONCURRENT_RPCS": "64",
            "TONGBAN_REFLECTION_OPS_ONLY": "false",
            "TONGBAN_AUDIT_FSYNC": "interval",
        }
    )
    assert config.tls == ServerTlsFiles(Path("ca.pem"), Path("gw.pem"), Path("gw.key"))
    assert config.deny_serials == {0x3AF1, 0x10, 0x255}
    assert config.rate_limits == {"SubmitApplication": RateLimit(5.0, 10.0)}
    assert config.max_concurrent_rpcs == 64
    assert config.max_receive_message_bytes == DEFAULT_MAX_RECEIVE_BYTES == 16 * 1024 * 1024
    assert config.reflection_ops_only is False
    assert config.audit_fsync == "interval"
    assert config.audit_path == Path("data/audit.jsonl")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("TONGBAN_DENY_SERIALS", "xyz"),
        ("TONGBAN_RATE_LIMITS", "Submit=0"),
        ("TONGBAN_AUDIT_FSYNC", "sometimes"),
        ("TONGBAN_MAX_CONCURRENT_RPCS", "1.5"),
    ],
)
def test_bad_values_are_refused_at_start(key: str, value: str) -> None:
    with pytest.raises(ConfigError):
        load_config({"TONGBAN_INSECURE": "1", key: value})
