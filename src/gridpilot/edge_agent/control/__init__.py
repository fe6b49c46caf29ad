"""Dispatch control: one controller per asset, its commands, rails, acks, journal,
local control and the fail-safe."""
