"""Every bound the Python side enforces, in one place. Units come last in each name."""

# Kafka's rule for topic names: legal characters and at most 249 of them.
TOPIC_NAME_LENGTH_MAX = 249
TOPIC_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
PARTITIONS_PER_TOPIC_MAX = 10_000

# Flushes nobody waits on (they move the high watermark after acks=1 appends) start at most
# this often, so they stay large: about 1.5 MB per fsync at 300 MiB/s.
BACKGROUND_FLUSH_INTERVAL_S = 0.005

# Threads that run fdatasync for group commits; each flush holds one for its duration.
FLUSH_THREADS = 4
# Threads that open (and recover) logs at start, Kafka's num.recovery.threads.per.data.dir.
RECOVERY_THREADS = 2

# Listener: how often idle connections are looked for, and how long a stop waits for answers.
IDLE_CHECK_INTERVAL_S = 5.0
DRAIN_TIMEOUT_S = 10.0

# Wire protocol.
TAGGED_FIELDS_MAX = 64
# Encoded Metadata answers kept per broker (one per distinct request shape), until a topic change.
RESPONSE_CACHE_ENTRIES_MAX = 1024

# Group coordinator: bytes of __consumer_offsets read per step while a partition is replayed
# (the event loop serves other requests between steps).
COORDINATOR_LOAD_CHUNK_BYTES = 256 << 10
# Parsed `__consumer_offsets` keys kept while replaying (one per group and partition recurs).
COORDINATOR_KEY_CACHE_SIZE = 1 << 16
# Idempotent producers. Kafka caches a producer's last 5 batches per partition: clients keep at
# most 5 requests in flight, so any retry they can send is one of them.
PRODUCER_BATCHES_KEPT = 5
# Producer ids are handed out from blocks persisted before use (KIP-730's size): a crash skips
# the rest of a block, and no id is ever given twice.
PRODUCER_ID_BLOCK_SIZE = 1000
# Producer-state snapshots kept per partition; older ones only matter if the newer fail their CRC.
PRODUCER_SNAPSHOTS_KEPT = 3
# Batch headers one call of the producer-state replay reads, so one call stays short.
PRODUCER_REPLAY_BATCHES_PER_CALL = 10_000
# A read that holds a whole transaction marker (one control record: 78 bytes on disk).
CONTROL_BATCH_READ_BYTES = 4096

# Embedded API. Appends of one loop turn are joined into batches of at most this many bytes (and
# never more than the topic's max.message.bytes).
EMBEDDED_BATCH_BYTES_MAX = 1 << 20
# A record's encoded fields besides its key, value and headers, at their widest: length (5),
# attributes (1), timestamp delta (10), offset delta (5), key and value lengths (5 each),
# header count (5).
RECORD_OVERHEAD_BYTES_MAX = 36
# What one native read returns at most unless asked otherwise.
EMBEDDED_READ_RECORDS_DEFAULT = 10_000
EMBEDDED_READ_BYTES_DEFAULT = 16 << 20
# A native read takes the log in pieces of at most this many bytes (it stops once it has
# max_records), so a large max_bytes costs nothing when the records run out first.
EMBEDDED_READ_PIECE_BYTES = 256 << 10
# How long a native call waits for a coordinator that is still loading its shard.
EMBEDDED_COORDINATOR_WAIT_S = 60.0
EMBEDDED_COORDINATOR_RETRY_S = 0.01

# Transaction markers: a marker write that failed for now is retried after this backoff, doubled
# per attempt up to the maximum.
TXN_MARKER_RETRY_BACKOFF_MS = 20
TXN_MARKER_RETRY_BACKOFF_MAX_MS = 1000
# How long an AddPartitionsToTxn or AddOffsetsToTxn (explicit, or TV2's implicit one) waits for
# the previous transaction's markers before it answers CONCURRENT_TRANSACTIONS (clients retry).
TXN_IMPLICIT_ADD_WAIT_S = 5.0

# Exactly-once sink (tidelog.sink). Records one batch (one database transaction) holds at most
# unless asked otherwise, and how long a poll waits to fill it.
SINK_BATCH_RECORDS_DEFAULT = 500
SINK_BATCH_TIMEOUT_S = 0.5
# A partition whose compare-and-set failed (another process claimed it) is claimed again if this
# process is still assigned it and its row did not move for this long (the other owner stopped);
# a zombie learns it lost the partition within a heartbeat or two, so it seldom looks. The wait
# doubles, up to the maximum, each time a re-claim is fenced before it stored a batch, and is
# spread by ±jitter (a fraction) so processes fenced together do not look in step.
SINK_RECLAIM_DELAY_S = 5.0
SINK_RECLAIM_DELAY_MAX_S = 60.0
SINK_RECLAIM_JITTER = 0.2
# Attempts at one database step (claim, batch) through transient errors (a dropped connection,
# a busy SQLite file, a serialization failure), with backoff doubling from the first delay.
SINK_STORE_ATTEMPTS = 8
SINK_STORE_BACKOFF_S = 0.05
SINK_STORE_BACKOFF_MAX_S = 2.0
# How long SQLite waits for another writer's lock before a statement fails.
SINK_SQLITE_BUSY_TIMEOUT_S = 30.0

# Verified reads (docs/operations.md). A fetch whose read reaches bytes not verified yet reads
# again this often while the segment's pass runs (the frontier moves a MiB at a time).
FETCH_VERIFY_POLL_S = 0.005
# The background scrub verifies one log this many bytes at a time between checks for shutdown.
SCRUB_STEP_BYTES = 64 * 1024 * 1024

# The metrics endpoint (tidelog.metrics.listen): a scrape, /healthz or /readyz waits this long
# for the event loop to take its snapshot; a loop that does not answer fails /healthz.
METRICS_LOOP_TIMEOUT_S = 5.0

# The log cleaner's thread runs at this nice value (0 to 19; higher yields more): on a machine
# with few cores a pass otherwise takes CPU time from produce requests and their fsyncs.
CLEANER_THREAD_NICE = 10
