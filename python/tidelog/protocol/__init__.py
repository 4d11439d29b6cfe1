"""The Kafka wire formats, sans-IO: bytes in, values out."""
