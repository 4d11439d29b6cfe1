"""Coordinators: state machines whose durable state is replayed from internal topics.

`runtime.py` is the generic part (write, wait durable, replay, load, unload); `group/` is the
group coordinator on it. They reach the log only through `runtime.CoordinatorLog`, which the
core supplies, so they import neither the core, the server nor the storage layer.
"""
