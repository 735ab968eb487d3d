"""Decision logic shared by the services, the offline evaluation and the tests: pure Python, no Kafka."""
