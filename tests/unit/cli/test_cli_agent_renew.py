"""`gridpilot agent renew` from a daily timer: nothing to do (and no network)
while the certificate is far from expiry; without files, a clear error."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from gridpilot.cli.main import app
from gridpilot.security.pki import Pki


def test_renew_is_not_due_far_from_expiry_and_fails_clearly_without_files(
    tmp_path: Path,
) -> None:
    issued = Pki.init(tmp_path / "pki").issue_gateway("gw-1", days=90)
    tls = tmp_path / "state" / "tls"
    tls.mkdir(parents=True)
    shutil.copy(issued.cert_file, tls / "gateway.pem")
    runner = CliRunner()
    args = ["agent", "renew", "--state-dir", str(tmp_path / "state")]
    r = runner.invoke(app, [*args, "--within-days", "30"])
    assert r.exit_code == 0 and "not due" in r.output, r.output
    # Due (within 100 days), but nothing to renew with: no key, one line, exit 1.
    r = runner.invoke(app, [*args, "--within-days", "100"])
    assert r.exit_code == 1
    assert "gridpilot agent renew:" in r.output and "no gateway.key/gateway.pem" in r.output
