"""tidelog: a Kafka-compatible log broker for people who live in Python."""

__version__ = "0.1.0"
