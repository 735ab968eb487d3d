"""Helpers shared by the tests: Kafka I/O, service processes, streams, registries, fakes."""
