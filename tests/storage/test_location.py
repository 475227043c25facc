"""Tests for gateway.storage.location: a store named by a path or by a URL, the password kept
out of the URL, `repr`, `str` and error messages."""

from __future__ import annotations

import pytest

from gateway.storage.location import PostgresConfig, split_password


@pytest.mark.parametrize(
    ("url", "without", "password"),
    [
        ("postgresql://app@db:5432/tongban", "postgresql://app@db:5432/tongban", None),
        ("postgresql://app:s3cret@db/tongban", "postgresql://app@db/tongban", "s3cret"),
        (
            "postgres://app:p%40ss%3Aw@db/t?sslmode=require",
            "postgres://app@db/t?sslmode=require",
            "p@ss:w",
        ),
        ("postgresql://db/t?password=q&search_path=x", "postgresql://db/t?search_path=x", "q"),
        ("postgresql:///t?host=/run/postgresql", "postgresql:///t?host=/run/postgresql", None),
        ("postgresql://app:@db/t", "postgresql://app@db/t", ""),
    ],
)
def test_the_password_is_split_from_the_url(url: str, without: str, password: str | None) -> None:
    assert split_password(url) == (without, password)


def test_a_url_of_another_scheme_is_refused_without_repeating_it() -> None:
    with pytest.raises(ValueError, match=r"not mysql://") as refused:
        split_password("mysql://app:s3cret@db/t")
    assert "s3cret" not in str(refused.value)


def test_a_config_keeps_its_password_out_of_its_url_repr_and_str() -> None:
    config = PostgresConfig("postgresql://app@db/t", password="s3cret")
    assert "s3cret" not in repr(config)
    assert str(config) == "postgresql://app@db/t"
    with pytest.raises(ValueError, match="no password") as refused:
        PostgresConfig("postgresql://app:s3cret@db/t")
    assert "s3cret" not in str(refused.value)
    with pytest.raises(ValueError, match="at least one"):
        PostgresConfig("postgresql://app@db/t", pool_size=0)
