"""The edge agent: one per site, speaking for all its assets over one
outbound gRPC stream to the headend (gateway mode).

Public API: :class:`EdgeAgent` (the runtime), :func:`load_config` /
:class:`SiteConfig` / :class:`ConfigError` (the site YAML),
:func:`site_assets` (config -> core assets) and
:class:`~gridpilot.edge_agent.adapters.DeviceAdapter` (the device interface).
"""

from .adapters import DeviceAdapter, DeviceError, DeviceUnavailable, DeviceWriteFailed
from .config import SiteConfig, site_assets
from .loader import ConfigError, load_config
from .runtime import EdgeAgent

__all__ = [
    "ConfigError",
    "DeviceAdapter",
    "DeviceError",
    "DeviceUnavailable",
    "DeviceWriteFailed",
    "EdgeAgent",
    "SiteConfig",
    "load_config",
    "site_assets",
]
