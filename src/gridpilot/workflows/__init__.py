"""Temporal workflows: deterministic, they import only ``gridpilot.core``."""
