"""The uplink: the gRPC link to the headend, what goes up it, and what comes down."""
