"""Local Kafka (KRaft), PostgreSQL and Redis for development and tests, without Docker."""
