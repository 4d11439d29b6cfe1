"""One module per Kafka API, each with `handle(broker, header, request)`."""
