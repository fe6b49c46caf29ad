"""``python -m gridpilot`` is the ``gridpilot`` command."""

from gridpilot.cli.main import app

app()
