"""Creating the pipeline's topics against a real broker: idempotent, co-partitioned, loud on a bad layout."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient

from retrain.topics import ensure_topics, pipeline_topics
from tests.helpers.kafka_io import topic_admin

# Topic administration goes through kafka-python whichever client serves: once is enough.
pytestmark = pytest.mark.clients("kafka-python")


def test_creates_every_topic_with_its_partitions_then_nothing_twice(admin: KafkaAdminClient, topic_settings):
    specs = pipeline_topics(topic_settings)

    first = ensure_topics(topic_admin(admin), specs)
    second = ensure_topics(topic_admin(admin), specs)

    names = list(topic_settings.names().values())
    assert sorted(first.created) == sorted(names)
    assert first.existing == [] and first.ok
    assert second.created == [] and sorted(second.existing) == sorted(names) and second.ok
    counts = topic_admin(admin).partition_counts(names)
    assert counts == {
        topic_settings.scoring_requests: 3,
        topic_settings.predictions: 3,
        topic_settings.labels: 3,
        topic_settings.labeled_examples: 3,
        topic_settings.retrain_events: 1,
        topic_settings.model_updates: 1,
        topic_settings.dead_letters: 1,
        topic_settings.detector_state: 3,
        topic_settings.detector_changelog: 3,
    }


def test_labeled_examples_keep_their_configured_retention(admin: KafkaAdminClient, topic_settings):
    from kafka.admin import ConfigResource, ConfigResourceType

    ensure_topics(topic_admin(admin), pipeline_topics(topic_settings))
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic_settings.labeled_examples)])
    retention = described["topic"][topic_settings.labeled_examples]["retention.ms"]
    assert retention["value"] == str(topic_settings.labeled_examples_retention_ms)
    assert retention["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    state = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic_settings.detector_state)])
    assert state["topic"][topic_settings.detector_state]["cleanup.policy"]["value"] == "compact"
    changelog = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic_settings.detector_changelog)])
    configured = changelog["topic"][topic_settings.detector_changelog]
    assert configured["cleanup.policy"]["value"] == "compact"
    assert configured["segment.bytes"]["value"] == str(64 * 1024 * 1024)


def test_existing_labels_topic_with_other_partition_count_is_reported(admin: KafkaAdminClient, topic_settings):
    topics = topic_settings
    admin.create_topics({topics.labels: {"num_partitions": 2, "replication_factor": 1}}, wait_for_metadata=True)

    report = ensure_topics(topic_admin(admin), pipeline_topics(topics))

    assert not report.ok
    assert f"co-partitioned stream topic {topics.labels} has 2 partitions, configured 3" in report.problems
    assert any("must have equal partition counts" in problem for problem in report.problems)
    assert topics.labels not in report.created and topics.predictions in report.created
