"""Why an agent's session ended: one vocabulary for the log, the database
(``agent_sessions.end_reason``) and the API (``last_end_reason``).

An agent session is its gRPC stream to one headend. Its reason is the first
one decided (a later one never overwrites it), with one exception: an end of
the agent's stream followed by the call being cut is ``network``, not
``closed`` (gRPC shows a dropped connection to the reader as an end of stream).
"""

from __future__ import annotations

from enum import StrEnum


class EndReason(StrEnum):
    # The agent ended its stream itself (half-close: it finished writing).
    CLOSED = "closed"
    # The stream was cut without the agent ending it: the connection dropped,
    # the agent's process died or it cancelled its call.
    NETWORK = "network"
    # Nothing came from the agent (no heartbeat, no telemetry, no ack) for
    # GRIDPILOT_AGENT_SILENCE_S: a hung agent or a half-open connection.
    UNRESPONSIVE = "unresponsive"
    # Its client certificate was revoked while the stream was open.
    REVOKED = "revoked"
    # An admin withdrew the gateway's enrollment for the site while the stream was open.
    UNENROLLED = "unenrolled"
    # A platform admin suspended the gateway's tenant while the stream was open.
    TENANT_SUSPENDED = "tenant_suspended"
    # A newer session of the same gateway took over (here or on another replica).
    SUPERSEDED = "superseded"
    # The agent sent bytes that are not an AgentMessage.
    INVALID_MESSAGE = "invalid_message"
    # The headend failed handling the stream (a bug; the details are in its log).
    HEADEND_ERROR = "headend_error"
    # The database was down while the agent's ack or local dispatch waited
    # for it: the stream ends so the agent sends it again on its next session.
    DATABASE_UNAVAILABLE = "database_unavailable"
    LOCAL_DISPATCH_UNRECORDED = "local_dispatch_unrecorded"
    # The headend could not write to the stream fast enough (its outbox filled).
    OUTBOX_FULL = "outbox_full"
    # The headend replica stopped, or restarted and found the session open.
    HEADEND_STOPPING = "headend_stopping"
    # A telemetry batch was over the gateway's quota (telemetry_samples_per_s):
    # refused before its ack, so the agent keeps it and sends it again.
    QUOTA_EXCEEDED = "quota_exceeded"
    HEADEND_RESTARTED = "headend_restarted"
