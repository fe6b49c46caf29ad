"""Wire and storage schema: generated protobuf code, tables, migrations."""
