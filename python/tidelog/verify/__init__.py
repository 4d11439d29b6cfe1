"""`tidelog verify`: checks the delivery guarantees of any Kafka-compatible cluster.

Worker processes (confluent-kafka) run a Jepsen-style queue or transaction workload against the
cluster and record a history of every operation; `checker` reads the history and the final
state of every partition and reports the anomalies it finds (lost writes, duplicates,
inconsistent offsets, aborted reads, ...). `proxy` is the fault proxy put between the workers
and the cluster. This package is a client of a cluster: it never imports the broker's own
layers, so it checks Apache Kafka as well as tidelog.

Modules: `history` (the operations and their JSON form), `checker` (pure Python, no I/O),
`proxy` (asyncio, kio for the few messages it rewrites), `workload` (the worker processes),
`runner` (the run: topics, workers, faults, final reads), `report` (table, JSON, plots).
"""
