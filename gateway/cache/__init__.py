"""The gateway's response cache: a store protocol, its Redis and in-memory implementations, keys
and single-flight."""
