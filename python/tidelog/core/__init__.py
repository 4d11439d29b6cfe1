"""The broker core: the operations every front end shares (TCP handlers, the embedded API).

`broker.Broker` is the service layer (produce, fetch, list offsets, topics, configs, records
deletion, producer ids) and owns the coordinators and housekeeping; `partition.Partition` is a
hosted partition (role, high watermark, last stable offset, waiters); `types` holds the plain
values the operations take and return.
"""
