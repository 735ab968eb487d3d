"""State a service keeps per partition on local disk, backed by a changelog: the store and the join over it."""
