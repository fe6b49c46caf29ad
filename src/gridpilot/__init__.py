"""GridPilot: an open dispatch control plane for distributed energy resources."""

__version__ = "0.1.0"
