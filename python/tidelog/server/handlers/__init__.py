"""One module per Kafka API, each with `handle(server, header, request)`: decode, call the core, encode."""
