"""Every bound the Python side enforces, in one place. Units come last in each name."""

# Kafka's rule for topic names: legal characters and at most 249 of them.
TOPIC_NAME_LENGTH_MAX = 249
TOPIC_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
PARTITIONS_PER_TOPIC_MAX = 10_000

# Threads that run fdatasync for group commits; each flush holds one for its duration.
FLUSH_THREADS = 4
# Threads that open (and recover) logs at start, Kafka's num.recovery.threads.per.data.dir.
RECOVERY_THREADS = 2

# Kafka's log.flush.offset.checkpoint.interval.ms and log.retention.check.interval.ms.
CHECKPOINT_INTERVAL_MS = 60_000
RETENTION_CHECK_INTERVAL_MS = 300_000

# Wire protocol.
TAGGED_FIELDS_MAX = 64
