"""The headend's agent side: AgentGateway servicer, sessions, telemetry ingest."""
