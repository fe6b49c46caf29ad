"""One aiomqtt client per connection attempt, payload helpers, and the one
place MQTT errors are read. aiomqtt does not reconnect by itself: callers
loop with backoff."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from ...config.protocols import _MqttBroker

_AUTH_CODES = {4, 5, 134, 135}  # MQTT 3.1.1 / 5 CONNACK: bad credentials, not authorized


def make_client(cfg: _MqttBroker, prefix: str) -> aiomqtt.Client:
    password = cfg.password
    if cfg.password_file is not None:  # read on every connect: rotation needs no restart
        lines = cfg.password_file.read_text(encoding="utf-8").splitlines()
        password = lines[0] if lines else ""
    return aiomqtt.Client(
        cfg.host,
        port=cfg.port,
        username=cfg.username,
        password=password,
        identifier=cfg.client_id or f"{prefix}-{uuid.uuid4().hex[:8]}",
        keepalive=cfg.keepalive_s,
        timeout=cfg.timeout_s,
    )


def classify(exc: BaseException, endpoint: str) -> tuple[bool, str]:
    """(misconfigured, message)."""
    if isinstance(exc, aiomqtt.MqttCodeError):
        rc = exc.rc
        value = rc if isinstance(rc, int) else getattr(rc, "value", None)
        if isinstance(exc, MqttConnectError) and value in _AUTH_CODES:
            return True, f"{endpoint} refused the login ({exc}): check username/password"
        return False, f"{endpoint}: {exc}"
    if isinstance(exc, aiomqtt.MqttError | OSError | TimeoutError):
        return False, f"cannot reach {endpoint}: {exc or type(exc).__name__}"
    return False, f"{endpoint}: {type(exc).__name__}: {exc}"


_MISSING = object()


def parse_payload(payload: Any) -> Any:
    """JSON when it parses, else the text (a number when it is one)."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes | bytearray) else payload
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        stripped = text.strip()
        try:
            return float(stripped)
        except ValueError:
            return stripped


def extract(document: Any, path: str | None) -> Any:
    """The member at a dotted path (list items by index); _MISSING if absent."""
    if path is None:
        return document
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif (
            isinstance(node, list)
            and part.lstrip("-").isdigit()
            and -len(node) <= int(part) < len(node)
        ):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def missing(value: Any) -> bool:
    return value is _MISSING


def build_payload(path: str | None, value: float) -> str:
    """``value`` at ``path`` as JSON, or the bare number without a path."""
    if path is None:
        return json.dumps(value)
    document: Any = value
    for part in reversed(path.split(".")):
        document = {part: document}
    return json.dumps(document)
