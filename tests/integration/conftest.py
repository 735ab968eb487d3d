"""A real Apache Kafka broker for the integration tests.

``RETRAIN_TEST_BOOTSTRAP_SERVERS`` names a broker to reuse. Without it, the project's own broker is started
once per test session on a port of its own (fresh data, so no state leaks between runs) and stopped at the
end. Every test makes its own topic names and group ids, so tests never see each other's records.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaAdminClient

from retrain.localkafka import LocalBroker, is_port_open
from retrain.settings import BrokerSettings, KafkaSettings, TopicSettings
from tests.conftest import REPO_ROOT

# Under pytest-xdist each worker (gw0, gw1, ...) has a broker of its own, 1000 ports apart.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
TEST_BROKER_PORT = int(os.environ.get("RETRAIN_TEST_BROKER_PORT", "19092")) + 1000 * _WORKER


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, dropped = [], []
    for item in items:
        if "tests/integration/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.kafka)
            item.add_marker(pytest.mark.slow)
        only = item.get_closest_marker("clients")
        client = getattr(item, "callspec", None) and item.callspec.params.get("kafka_client")
        (dropped if only is not None and client is not None and client not in only.args else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    reuse = os.environ.get("RETRAIN_TEST_BOOTSTRAP_SERVERS")
    if reuse:
        yield reuse
        return
    settings = BrokerSettings(
        port=TEST_BROKER_PORT,
        cache_dir=REPO_ROOT / ".cache" / "kafka",
        data_dir=REPO_ROOT / ".cache" / "kafka" / f"test-data-{TEST_BROKER_PORT}",
    )
    broker = LocalBroker(settings)
    if broker.running_pid() is None and is_port_open("127.0.0.1", TEST_BROKER_PORT):
        pytest.exit(f"port {TEST_BROKER_PORT} is taken; set RETRAIN_TEST_BROKER_PORT to a free one", returncode=2)
    broker.start(fresh=broker.running_pid() is None)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


# Every test that uses a Kafka client of the product runs once per client; RETRAIN_TEST_KAFKA_CLIENTS narrows it.
KAFKA_CLIENTS = os.environ.get("RETRAIN_TEST_KAFKA_CLIENTS", "kafka-python,confluent-kafka").split(",")


@pytest.fixture(scope="session", params=KAFKA_CLIENTS)
def kafka_client(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def kafka_settings(bootstrap: str, kafka_client: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=bootstrap, client_id="retrain-tests", client=kafka_client)


@pytest.fixture
def unique() -> str:
    """A short suffix that makes this test's topic names and group ids its own."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def topic_settings(unique: str) -> TopicSettings:
    """The pipeline's topics, with names private to this test."""
    return TopicSettings(
        scoring_requests=f"scoring-requests-{unique}",
        predictions=f"predictions-{unique}",
        labels=f"labels-{unique}",
        labeled_examples=f"labeled-examples-{unique}",
        retrain_events=f"retrain-events-{unique}",
        model_updates=f"model-updates-{unique}",
        dead_letters=f"dead-letters-{unique}",
        detector_state=f"detector-state-{unique}",
        detector_changelog=f"detector-changelog-{unique}",
        stream_partitions=3,
    )


@pytest.fixture
def admin(kafka_settings: KafkaSettings) -> Iterator[KafkaAdminClient]:
    from tests.helpers.kafka_io import make_admin

    client = make_admin(kafka_settings)
    yield client
    client.close()


@pytest.fixture
def created_topics(admin: KafkaAdminClient, topic_settings: TopicSettings) -> TopicSettings:
    from retrain.topics import ensure_topics, pipeline_topics
    from tests.helpers.kafka_io import topic_admin

    report = ensure_topics(topic_admin(admin), pipeline_topics(topic_settings))
    assert report.ok, report.problems
    return topic_settings


@pytest.fixture
def new_topic(admin: KafkaAdminClient, unique: str) -> Callable[..., str]:
    counter = iter(range(1_000))

    def make(partitions: int = 1) -> str:
        name = f"t-{unique}-{next(counter)}"
        admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1}}, wait_for_metadata=True)
        return name

    return make
