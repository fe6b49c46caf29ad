"""Generated from proto/gridpilot/v1 by scripts/gen_proto.py; do not edit."""
