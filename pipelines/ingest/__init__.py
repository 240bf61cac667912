"""Landing ingestion: list a partition's files and parse them (see ``parse``)."""
