"""Event-triggered retraining on Kafka: the command line, settings, the local broker and topic management."""

__version__ = "0.1.0"
