"""Client writes to the control variables, answered one by one.

asyncua's own hooks do not fit: PreWrite/PostWrite callbacks and value
setters also fire for the server's internal writes, and raising in them fails
the whole Write request (items before it already applied). Instead the
server's ``attribute_service.write`` is wrapped (an instance attribute that
shadows the method; checked against asyncua 2.1's ``InternalSession.write``,
which calls ``self.iserver.attribute_service.write(params, user=user)``):

- an item that writes the Value of a writable control node, sent by a
  network session, is awaited in our handler, in request order, and gets the
  handler's own StatusCode;
- every other item (telemetry, other attributes, the server's internal
  session) goes to the original write, which enforces AccessLevel: a
  read-only node answers BadUserAccessDenied.

Internal value updates use ``server.write_attribute_value``, which goes to
the address space directly and never reaches this wrapper.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

import structlog
from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole

from ._ua import status

log = structlog.get_logger(__name__)

Handler = Callable[[ua.WriteValue, User], Awaitable[ua.StatusCode]]


class ControlWriteRouter:
    def __init__(
        self, attribute_service: Any, controls: Collection[ua.NodeId], handler: Handler
    ) -> None:
        self._service = attribute_service
        self._controls = controls  # the writable control variables
        self._handler = handler
        self._original: Callable[..., Awaitable[list[ua.StatusCode]]] | None = None

    def install(self) -> None:
        if self._original is not None:
            return
        self._original = self._service.write
        self._service.write = self.write

    def uninstall(self) -> None:
        if self._original is not None:
            del self._service.write  # the class method shows through again
            self._original = None

    async def write(
        self, params: ua.WriteParameters, user: User = User(role=UserRole.Admin)
    ) -> list[ua.StatusCode]:
        original = self._original
        assert original is not None, "write() called after uninstall()"
        if user.role == UserRole.Admin:  # the server itself (remote admin is off)
            return await original(params, user=user)
        results: list[ua.StatusCode] = []
        for item in params.NodesToWrite:
            if item.AttributeId == ua.AttributeIds.Value and item.NodeId in self._controls:
                try:
                    results.append(await self._handler(item, user))
                except Exception:  # a bug must not kill the session: answer this item only
                    log.exception("opcua control write failed", node=item.NodeId.to_string())
                    results.append(status(ua.StatusCodes.BadInternalError))
            else:
                single = ua.WriteParameters(NodesToWrite=[item])
                results.extend(await original(single, user=user))
        return results
