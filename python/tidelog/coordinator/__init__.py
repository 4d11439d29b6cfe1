"""Coordinators: state machines whose durable state is replayed from internal topics.

They use the log only through the small interface in `shard.OffsetsLog`, which the server
supplies, so they import neither the server nor the storage layer.
"""
