"""REST API (/api/v1) and the operator console."""
