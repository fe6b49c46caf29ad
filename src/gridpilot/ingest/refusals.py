"""How often a refused gateway is written to the audit log.

An agent retrying with backoff repeats the same refusal; writing each attempt
would flood the audit chain. So a refusal is audited once per distinct cause
and window: the same action, actor and target, by the same certificate, for the
same reason. A different certificate from the same host, or the same
certificate refused for another reason, is a new cause and audited at once
(a stolen certificate tried after a wrong one must not hide behind it). The
log line of every attempt is kept regardless.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

AUDIT_REPEAT_S = 60.0
MAX_CAUSES = 10_000


class Cause(NamedTuple):
    action: str
    actor: str
    target: str
    fingerprint: str  # SHA-256 of the peer's certificate ("" when it sent none)
    reason: str


class RefusalLimiter:
    """``admit(cause)``: True when this cause was not audited in the last
    ``window_s`` seconds (and from now on it counts as audited)."""

    def __init__(
        self,
        window_s: float = AUDIT_REPEAT_S,
        max_causes: int = MAX_CAUSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window_s
        self._max = max_causes
        self._clock = clock
        self._audited: OrderedDict[Cause, float] = OrderedDict()  # oldest first

    def admit(self, cause: Cause) -> bool:
        now = self._clock()
        self._forget_before(now - self._window)
        if cause in self._audited:
            return False
        while len(self._audited) >= self._max:
            # Forgetting a cause early only audits it again: never one too few.
            self._audited.popitem(last=False)
        self._audited[cause] = now
        return True

    def _forget_before(self, horizon: float) -> None:
        while self._audited:
            cause, at = next(iter(self._audited.items()))
            if at > horizon:
                return
            del self._audited[cause]

    def __len__(self) -> int:
        return len(self._audited)
