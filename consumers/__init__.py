"""Kafka services (detector, trainer, scorer) and the small runtime they share."""
