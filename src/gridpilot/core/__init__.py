"""Pure domain code: no I/O, imports nothing else of GridPilot.

Shared by the API, the Temporal workflows and the edge agent.
"""
