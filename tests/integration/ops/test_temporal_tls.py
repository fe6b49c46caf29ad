"""The headend's Temporal client over TLS and mutual TLS (as Temporal Cloud
needs): a real Temporal dev server behind a TLS-terminating proxy that
requires a client certificate of the test CA."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from gp_testing import TestPki
from gp_testing.tcp_proxy import TcpProxy
from pydantic import ValidationError

from gridpilot.ops import temporal
from gridpilot.ops.processes import free_port
from gridpilot.ops.settings import Settings

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def tls_temporal(temporal_env: Any, test_pki: TestPki) -> AsyncIterator[str]:
    """host:port of the dev server behind mutual TLS (the headend's test
    certificate for 127.0.0.1; clients need one of the test CA)."""
    target = temporal_env.client.service_client.config.target_host
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(test_pki.headend.cert_file, test_pki.headend.key_file)
    ctx.load_verify_locations(test_pki.pki.ca_file)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])  # gRPC
    proxy = TcpProxy(free_port(), int(target.rsplit(":", 1)[1]), ssl=ctx)
    await proxy.start()
    try:
        yield f"127.0.0.1:{proxy.listen_port}"
    finally:
        await proxy.stop()


def _settings(**kw: Any) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


async def test_the_headend_client_speaks_mutual_tls_to_temporal(
    tls_temporal: str, test_pki: TestPki
) -> None:
    client_cert = test_pki.gateway("temporal-client")  # any clientAuth certificate of the CA
    s = _settings(
        temporal_address=tls_temporal,
        temporal_tls_cert_file=client_cert.cert_file,
        temporal_tls_key_file=client_cert.key_file,
        temporal_tls_ca_file=test_pki.pki.ca_file,
    )
    assert s.temporal_uses_tls
    client = await temporal.connect(
        s.temporal_address, s.temporal_namespace, 30, tls=temporal.client_tls(s)
    )
    assert await temporal.probe(client) == "ok"


async def test_without_a_client_certificate_or_tls_it_fails_in_one_line(
    tls_temporal: str, test_pki: TestPki
) -> None:
    no_cert = _settings(temporal_address=tls_temporal, temporal_tls_ca_file=test_pki.pki.ca_file)
    with pytest.raises(ConnectionError, match=r"not reachable at .*, TLS\)"):
        await temporal.connect(tls_temporal, "default", 3, tls=temporal.client_tls(no_cert))
    plain = _settings(temporal_address=tls_temporal)
    assert temporal.client_tls(plain) is False
    with pytest.raises(ConnectionError, match=r"not reachable at .*namespace default\)"):
        await temporal.connect(tls_temporal, "default", 3, tls=False)


def test_tls_settings_are_checked_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="TEMPORAL_TLS_CERT_FILE and GRIDPILOT_TEMPORAL"):
        _settings(temporal_tls_cert_file=tmp_path / "c.pem")
    s = _settings(temporal_tls_ca_file=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="GRIDPILOT_TEMPORAL_TLS_CA_FILE: cannot read"):
        temporal.client_tls(s)
    assert _settings(temporal_tls=True).temporal_uses_tls
