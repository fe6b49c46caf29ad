"""Telemetry: pollers, the batcher, the store-and-forward buffer, the MQTT publisher."""
