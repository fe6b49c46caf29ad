"""MQTT adapter (aiomqtt): JSON payload mapping and setpoint publishing."""

from .adapter import MqttAdapter

__all__ = ["MqttAdapter"]
