"""Temporal activities: the dispatch workflows' I/O (database, agent sessions)."""
