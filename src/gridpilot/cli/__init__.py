"""The ``gridpilot`` command line."""
