"""The group coordinator (classic protocol) on the coordinator runtime: `coordinator.py` routes,
`shard.py` holds the rules of one `__consumer_offsets` partition, `group.py` a group's state,
`records.py` Kafka's formats of `__consumer_offsets`."""
