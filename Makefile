# The two commands of the README: `make test` and `make demo`. Both set up everything they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test test-fast demo lint format schemas docs system-deps broker-jars clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests use: kcat (a Kafka client nobody here wrote, for the interop tests), prometheus
# (a real Prometheus server and promtool, for the observability tests) and openssl (the mutual-TLS client
# certificate in the security test).
system-deps:
	@{ command -v kcat && command -v promtool && command -v prometheus && command -v openssl; } >/dev/null || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends kcat prometheus openssl; }

# Kafka's jars from Maven Central into .cache/kafka (no download when the cache is warm).
broker-jars: $(STAMP)
	$(BIN)/retrain kafka fetch

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) system-deps broker-jars lint
	$(BIN)/retrain schemas export --check
	$(BIN)/pytest --durations=30

# The edit-run loop: the unit tests without the slow ones (no broker, no worker processes).
test-fast: $(STAMP)
	$(BIN)/pytest -q -m 'not slow' tests/unit

demo: $(STAMP) broker-jars
	$(BIN)/retrain demo

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schemas: $(STAMP)
	$(BIN)/retrain schemas export

# docs/configuration.md and docs/events.md, generated from the settings classes and the event models.
docs: $(STAMP)
	$(BIN)/python -m retrain.reference

clean:
	-$(BIN)/retrain kafka stop
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache *.egg-info
