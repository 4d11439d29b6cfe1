"""The Kafka wire server: the only layer with sockets in it."""
