"""The one translation between the AgentGateway protocol (protobuf) and our
own types, imported by both sides: the headend (ingest, activities) and the
edge agent. Nothing outside this package (and the generated ``schema/pb``)
imports a ``*_pb2`` module.

- :mod:`.messages`: the message classes, for annotations and ``WhichOneof``
- :mod:`.service`: the gRPC service glue (servicer base, stub, registration)
- :mod:`.times`: timestamps
- :mod:`.codes`: reason codes, ack states, asset types
- :mod:`.text`: ids and free text an agent sends, made storable
- :mod:`.telemetry`: samples and batches
- :mod:`.session`: Hello, Welcome
- :mod:`.dispatch`: the headend's side of setpoints, releases, acks, local dispatches
- :mod:`.agent`: the agent's side of the same (its commands, acks, buffer)

Submodules are imported one by one (this file imports none of them), so the
headend's imports never load the edge agent's types.
"""
