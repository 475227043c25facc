"""The security keys of the gateway's configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app.config import DEFAULT_MAX_RECEIVE_BYTES, ConfigError, load_config
from gateway.security.ratelimit import RateLimit
from gateway.security.tls import ServerTlsFiles
from gateway.storage.location import PostgresConfig


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
        ("TONGBAN_WATCH_POLL", "0"),
        ("TONGBAN_REPLICA", "../elsewhere"),
        ("TONGBAN_REPLICA", "-r1"),
        ("TONGBAN_REPLICA", "r" * 64),
    ],
)
def test_bad_values_are_refused_at_start(key: str, value: str) -> None:
    with pytest.raises(ConfigError):
        load_config({"TONGBAN_INSECURE": "1", key: value})


def test_each_replica_and_worker_keeps_its_own_audit_chain() -> None:
    alone = load_config({"TONGBAN_INSECURE": "1"})
    assert (alone.replica, alone.audit_path) == ("", Path("data/audit.jsonl"))
    replica = load_config({"TONGBAN_INSECURE": "1", "TONGBAN_REPLICA": "gw-7d9c.b"})
    assert replica.audit_path == Path("data/audit-gw-7d9c.b.jsonl")
    worker = load_config(
        {"TONGBAN_INSECURE": "1", "TONGBAN_REPLICA": "r2", "TONGBAN_WORKER_INDEX": "3"}
    )
    assert worker.audit_path == Path("data/audit-r2-3.jsonl")
    assert load_config({"TONGBAN_INSECURE": "1", "TONGBAN_WATCH_POLL": "5"}).watch_poll == 5.0


# -- the store -------------------------------------------------------------------------------

INSECURE = {"TONGBAN_INSECURE": "1"}


def test_the_store_is_the_sqlite_file_under_the_data_dir_unless_named() -> None:
    default = load_config({**INSECURE, "TONGBAN_DATA_DIR": "/var/lib/tongban"})
    assert default.store is None
    assert default.store_config == Path("/var/lib/tongban/gateway.sqlite3")
    named = load_config({**INSECURE, "TONGBAN_STORE": "/srv/store.db"})
    assert named.store_config == Path("/srv/store.db")


def test_a_postgresql_url_keeps_its_password_out_of_the_config_repr() -> None:
    config = load_config(
        {
            **INSECURE,
            "TONGBAN_STORE": "postgresql://gw:s3cret-pw@db.internal:5432/tongban",
            "TONGBAN_STORE_POOL_SIZE": "24",
        }
    )
    assert config.store == PostgresConfig(
        "postgresql://gw@db.internal:5432/tongban", password="s3cret-pw", pool_size=24
    )
    assert config.store.password == "s3cret-pw"
    assert "s3cret" not in repr(config)
    assert str(config.store_config) == "postgresql://gw@db.internal:5432/tongban"


def test_the_password_comes_from_the_url_then_the_file_then_pgpassword(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-file\n", encoding="utf-8")
    url = "postgresql://gw@db/tongban"

    def password(**keys: str) -> str | None:
        config = load_config({**INSECURE, "TONGBAN_STORE": url, **keys})
        assert isinstance(config.store, PostgresConfig)
        assert "from-" not in repr(config)
        return config.store.read_password()

    assert password() is None
    assert password(PGPASSWORD="from-env") == "from-env"
    assert password(TONGBAN_STORE_PASSWORD_FILE=str(secret), PGPASSWORD="x") == "from-file"
    assert password(TONGBAN_STORE="postgresql://gw:from-url@db/t", PGPASSWORD="x") == "from-url"
    # The file is read when a connection is made, not when the config is: a rotated Secret
    # is picked up without a restart.
    secret.write_text("rotated\n", encoding="utf-8")
    assert password(TONGBAN_STORE_PASSWORD_FILE=str(secret)) == "rotated"


def test_a_missing_password_file_is_found_when_the_store_connects(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file"
    config = load_config(
        {
            **INSECURE,
            "TONGBAN_STORE": "postgresql://gw@db/t",
            "TONGBAN_STORE_PASSWORD_FILE": str(missing),
        }
    )
    assert isinstance(config.store, PostgresConfig)
    assert config.store.password_file == missing
    with pytest.raises(FileNotFoundError):
        config.store.read_password()


def test_store_mistakes_are_refused_without_repeating_the_password(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("other", encoding="utf-8")
    cases = [
        {"TONGBAN_STORE": "mysql://gw:s3cret@db/t"},
        {
            "TONGBAN_STORE": "postgresql://gw:s3cret@db/t",
            "TONGBAN_STORE_PASSWORD_FILE": str(secret),
        },
        {"TONGBAN_STORE": "postgresql://gw:s3cret@db/t", "TONGBAN_STORE_POOL_SIZE": "0"},
    ]
    for keys in cases:
        with pytest.raises(ConfigError) as refused:
            load_config({**INSECURE, **keys})
        assert "s3cret" not in refused.value.message
