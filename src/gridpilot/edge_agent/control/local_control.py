"""Local control: setpoints written on site (the OPC UA surface), not by the cloud.

A local write becomes a *local dispatch*: it goes through the asset's
controller queue like a cloud dispatch (same rails, same order), is reported
to the headend with source ``local`` so the cloud record stays complete, and
competes with cloud dispatches by the site's :class:`Arbitration` policy:

- ``cloud_priority`` (default): a cloud dispatch arriving during a local one
  takes the asset over (the local one is released ``SUPERSEDED``); a local
  write while a cloud dispatch holds the asset is refused
  (``PRIORITY_CONFLICT``).
- ``local_priority``: a local write takes the asset over from a cloud
  dispatch (released ``LOCAL_CONTROL``); a cloud dispatch arriving while a
  local one runs is refused (``LOCAL_CONTROL``).
- ``local_only``: every cloud dispatch is refused (``LOCAL_CONTROL``).

This module holds the shared vocabulary; :func:`.arbitration.arbitrate`
decides, :class:`.local_desk.LocalDesk` takes the local writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gridpilot.core.lifecycle import ReasonCode


class Arbitration(StrEnum):
    CLOUD_PRIORITY = "cloud_priority"
    LOCAL_PRIORITY = "local_priority"
    LOCAL_ONLY = "local_only"


class Source(StrEnum):
    CLOUD = "cloud"
    LOCAL = "local"


class Mode(StrEnum):
    """Who drives the asset now."""

    DEFAULT = "default"  # no dispatch: the asset is at its configured default
    CLOUD = "cloud"
    LOCAL = "local"


class Outcome(StrEnum):
    APPLIED = "applied"  # written to the device (a local write) / released (a release)
    REJECTED = "rejected"  # refused before touching the device; ``reason`` says why
    FAILED = "failed"  # accepted, but the device write failed
    PENDING = "pending"  # accepted, not finished within the caller's wait


@dataclass(frozen=True, slots=True)
class LocalResult:
    outcome: Outcome
    dispatch_id: str | None = None
    reason: ReasonCode | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ControlView:
    """One asset's control state, as the OPC UA surface shows it."""

    asset_id: str
    mode: Mode
    active_dispatch_id: str  # "" when none
    setpoint_kw: float | None  # the active dispatch's target, None at the default
    setpoint_actual_kw: float | None  # the last value written to the device
    command_status: str  # one human line: the latest command and what became of it
