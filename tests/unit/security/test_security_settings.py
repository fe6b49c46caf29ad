"""Secure defaults: mTLS unless explicitly insecure (never in production), OIDC settings
checked at start-up, a missing TLS file named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridpilot.ops.headend import HeadendError, grpc_credentials
from gridpilot.ops.settings import Environment, Settings, load_settings


def test_grpc_is_mtls_by_default_and_insecure_is_refused_in_production(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert Settings(_env_file=None).grpc_insecure is False  # type: ignore[call-arg]
    with pytest.raises(SystemExit) as exit_info:
        load_settings(_env_file=None, grpc_insecure=True, environment=Environment.PRODUCTION)
    assert exit_info.value.code == 2
    assert "grpc_insecure is refused in production" in capsys.readouterr().err


def test_headend_without_tls_files_names_the_missing_setting(tmp_path: Path) -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(HeadendError, match="GRIDPILOT_GRPC_TLS_CERT_FILE is not set"):
        grpc_credentials(s)
    missing = tmp_path / "nope.pem"
    s = Settings(  # type: ignore[call-arg]
        _env_file=None,
        grpc_tls_cert_file=missing,
        grpc_tls_key_file=missing,
        grpc_client_ca_file=missing,
    )
    with pytest.raises(HeadendError, match="cannot read"):
        grpc_credentials(s)
    insecure = Settings(_env_file=None, grpc_insecure=True)  # type: ignore[call-arg]
    assert grpc_credentials(insecure) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"oidc_jwks_url": "https://idp/jwks"}, "needs oidc_issuer and oidc_audience"),
        (
            {
                "oidc_jwks_url": "https://idp/jwks",
                "oidc_issuer": "https://idp",
                "oidc_audience": "gp",
                "oidc_algorithms": "HS256",
            },
            "not allowed",
        ),
        (
            {
                "oidc_jwks_url": "https://idp/jwks",
                "oidc_issuer": "https://idp",
                "oidc_audience": "gp",
                "oidc_role_map": "ops=superuser",
            },
            "superuser",
        ),
        ({"trust_domain": "Not A Domain"}, "trust domain"),
    ],
)
def test_bad_security_settings_stop_the_start(
    capsys: pytest.CaptureFixture[str], overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(SystemExit):
        load_settings(_env_file=None, **overrides)
    assert message in capsys.readouterr().err
