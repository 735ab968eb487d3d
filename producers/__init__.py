"""Producers: publish events to their topics, and replay drifting streams into Kafka (producers.replay)."""

from retrain.producers.publisher import EventPublisher, dead_letter_headers, topic_for

__all__ = ["EventPublisher", "dead_letter_headers", "topic_for"]
