"""Dispatch persistence: the one home of the dispatch tables' SQL, used by the
REST service, the gRPC ingest and the Temporal activities alike."""
