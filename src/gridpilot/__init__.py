"""GridPilot: an open dispatch control plane for distributed energy resources."""

import os

# GridPilot only forks to exec (subprocess). gRPC's fork handlers are for
# processes that keep using gRPC after a fork; while other threads are in
# gRPC they can crash the child before its exec (grpc/grpc#29044). Read when
# gRPC loads, so it is set here, before it does; an explicit value wins.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

__version__ = "0.1.0"
