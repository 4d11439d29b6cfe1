"""How long the group coordinator takes to replay `__consumer_offsets` after a restart.

    python bench/coordinator_load.py [--commits 1000000] [--per-request 10] [--groups 1000] [--compact]

Without compaction the topic keeps every commit, so load time grows with the commits ever made.
This writes `--commits` offset-commit records (in batches of `--per-request`, one batch per
OffsetCommit request as the coordinator writes them, spread over `--groups` groups and the
topic's 50 partitions) straight into a broker's data directory with the storage engine, then
starts `tidelog serve` on it and measures:

- start to ready (the listener accepts while partitions are still replaying), and
- start to loaded: until OffsetFetch stops answering COORDINATOR_LOAD_IN_PROGRESS for a group
  in every partition, checking the answers are the last commits written.

`--compact` measures that twice: first as above (the broker's cleaner off, so nothing changes
under the replay), then, after a broker ran with its cleaner on (`log.cleaner.backoff.ms=100`)
until every partition holding commits was cleaned and no `cleaned __consumer_offsets-` line came
for `QUIET_S`, again on the compacted topic (cleaner off again). The cleaner never touches a
partition's active segment, and 100 MiB segments (`offsets.topic.segment.bytes`) do not fill
here, so with `--compact` the segments holding the commits are rolled once they are written (as
`segment.ms` rolls them after a week in a real broker); the first replay reads the same records
either way. It reports both times and the topic's size on disk before and after.

Progress goes to stderr; the result is one JSON line on stdout. No figure here is a test assertion.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from kio.schema.errors import ErrorCode  # noqa: E402
from kio.schema.offset_fetch.v7.request import OffsetFetchRequest, OffsetFetchRequestTopic  # noqa: E402

from tests.server.conftest import BrokerProcess, free_port  # noqa: E402
from tests.server.wire_client import WireClient  # noqa: E402
from tidelog.config import BrokerConfig  # noqa: E402
from tidelog.coordinator.group import records  # noqa: E402
from tidelog.coordinator.group.records import OffsetAndMetadata, OffsetKey  # noqa: E402
from tidelog.protocol.record_batch import build_batch  # noqa: E402
from tidelog.storage import LogManager, TopicPartition  # noqa: E402

TOPIC = "__consumer_offsets"
DATA_TOPIC = "events"
LOADED_TIMEOUT_S = 600
COMPACTION_TIMEOUT_S = 600
QUIET_S = 3.0  # compaction is over when every partition was cleaned and no pass came for this long
CLEANER_OFF = {"log.cleaner.enable": "false"}
CLEANER_FAST = {"log.cleaner.backoff.ms": "100"}
GROUP_LOADED = re.compile(r"group coordinator loaded: (\d+) record\(s\) in (\d+) ms")
CLEANED = re.compile(r"cleaned __consumer_offsets-(\d+): .* in (\d+) ms")
MiB = 1 << 20


def create_offsets_topic(data_dir: Path) -> int:
    """Lets a real broker create the topic (so its settings are the broker's), then stops it."""
    broker = BrokerProcess(data_dir, free_port(), {"num.partitions": "16"}).start()
    client = WireClient(broker.port)
    from kio.schema.find_coordinator.v3.request import FindCoordinatorRequest
    from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic

    client.request(10, 3, FindCoordinatorRequest(key="setup", key_type=0))
    client.request(
        3,
        12,
        MetadataRequest(
            topics=(MetadataRequestTopic(topic_id=None, name=DATA_TOPIC),),
            allow_auto_topic_creation=True,
            include_topic_authorized_operations=False,
        ),
    )
    client.close()
    broker.stop()
    return BrokerConfig().offsets_topic_num_partitions


def write_commits(
    data_dir: Path, commits: int, per_request: int, groups: int, roll: bool = False
) -> dict[str, dict[int, int]]:
    """Appends the commit records; returns each group's last committed offset per partition.
    `roll`: then seals each partition's active segment, so the cleaner may take the commits."""
    manager = LogManager.open(str(data_dir), BrokerConfig().topic_defaults)
    partitions = manager.topics[TOPIC].partitions
    last: dict[str, dict[int, int]] = {}
    written = 0
    started = time.monotonic()
    request = 0
    while written < commits:
        group = f"group-{request % groups}"
        offsets = last.setdefault(group, {})
        batch_records = []
        for i in range(min(per_request, commits - written)):
            partition = i % 16
            offset = offsets.get(partition, 0) + 1 + request % 7
            offsets[partition] = offset
            value = OffsetAndMetadata(offset, -1, "", int(time.time() * 1000))
            batch_records.append(
                (
                    value.commit_timestamp_ms,
                    records.offset_key(OffsetKey(group, DATA_TOPIC, partition)),
                    records.offset_value(value),
                    (),
                )
            )
        shard = manager.get(TopicPartition(TOPIC, records.partition_for(group, partitions)))
        assert shard is not None
        shard.append(build_batch(batch_records))
        written += len(batch_records)
        request += 1
        if request % 20_000 == 0:
            print(f"  wrote {written:,} commits ({written / (time.monotonic() - started):,.0f}/s)", file=sys.stderr)
    if roll:
        for partition in range(partitions):
            shard = manager.get(TopicPartition(TOPIC, partition))
            assert shard is not None
            shard.log.roll()
    manager.close()
    return last


def offsets_topic_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob(f"{TOPIC}-*/*.log"))


def fetch(client: WireClient, group: str) -> tuple[ErrorCode, dict[int, int]]:
    request = OffsetFetchRequest(
        group_id=group,
        topics=(OffsetFetchRequestTopic(name=DATA_TOPIC, partition_indexes=tuple(range(16))),),
        require_stable=False,
    )
    answer = client.request(9, 7, request)
    return ErrorCode(answer.error_code), {
        p.partition_index: int(p.committed_offset) for t in answer.topics for p in t.partitions
    }


def measure_load(
    data_dir: Path, expected: dict[str, dict[int, int]], settings: dict[str, str] | None = None
) -> dict[str, float | int]:
    started = time.monotonic()
    broker = BrokerProcess(data_dir, free_port(), dict(settings or {})).start()
    ready_s = time.monotonic() - started
    client = WireClient(broker.port)
    pending = dict(expected)
    loading_answers = 0
    deadline = started + LOADED_TIMEOUT_S
    while pending and time.monotonic() < deadline:
        for group in list(pending):
            error, offsets = fetch(client, group)
            if error == ErrorCode.coordinator_load_in_progress:
                loading_answers += 1
                continue
            assert error == ErrorCode.none, error
            want = {p: pending[group].get(p, -1) for p in range(16)}
            assert offsets == want, f"{group}: {offsets} != {want}"
            del pending[group]
        time.sleep(0.01)
    loaded_s = time.monotonic() - started
    client.close()
    load_lines = [line for line in broker.lines if "loaded __consumer_offsets" in line]
    replay = GROUP_LOADED.search(broker.log_text())
    broker.stop()
    assert not pending, f"{len(pending)} group(s) not loaded in {LOADED_TIMEOUT_S} s"
    return {
        "start_to_ready_s": round(ready_s, 3),
        "start_to_loaded_s": round(loaded_s, 3),
        "load_in_progress_answers": loading_answers,
        "partitions_logged": len(load_lines),
        # the coordinator's own figure: its replay of every partition, from its first to its last
        "replay_records": int(replay[1]) if replay else -1,
        "replay_s": int(replay[2]) / 1000 if replay else -1,
    }


def compact(data_dir: Path, partitions_with_commits: set[int]) -> dict[str, float | int]:
    """Runs a broker with a fast cleaner until every partition holding commits was cleaned and
    no pass came for QUIET_S; returns how long that took and what the passes did."""
    started = time.monotonic()
    broker = BrokerProcess(data_dir, free_port(), CLEANER_FAST).start()
    seen = 0
    last_pass = time.monotonic()
    cleaned: set[int] = set()
    deadline = started + COMPACTION_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            passes = CLEANED.findall(broker.log_text())
            if len(passes) != seen:
                seen, last_pass = len(passes), time.monotonic()
                cleaned = {int(p) for p, _ in passes}
                print(f"  {seen} pass(es), {len(cleaned)}/{len(partitions_with_commits)} partitions", file=sys.stderr)
            if cleaned >= partitions_with_commits and time.monotonic() - last_pass >= QUIET_S:
                break
            time.sleep(0.1)
    finally:
        broker.stop()
    passes = CLEANED.findall(broker.log_text())
    missing = partitions_with_commits - {int(p) for p, _ in passes}
    if missing:
        print(f"  no cleaning pass over partition(s) {sorted(missing)}", file=sys.stderr)
    return {
        "compaction_wall_s": round(last_pass - started, 3),
        "cleaning_passes": len(passes),
        "partitions_cleaned": len({p for p, _ in passes}),
        "partitions_not_cleaned": len(missing),
        "cleaning_ms_total": sum(int(ms) for _, ms in passes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=1_000_000)
    parser.add_argument("--per-request", type=int, default=10)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--compact", action="store_true", help="measure again after the cleaner compacted the topic")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="tidelog-offsets-load-")) / "data"
    try:
        print(f"creating {TOPIC} in {data_dir}", file=sys.stderr)
        create_offsets_topic(data_dir)
        print(f"writing {args.commits:,} commits", file=sys.stderr)
        expected = write_commits(data_dir, args.commits, args.per_request, args.groups, roll=args.compact)
        size = offsets_topic_bytes(data_dir)
        subprocess.run(["sync"], check=False)
        print(f"starting the broker on {size / MiB:.1f} MiB of {TOPIC}", file=sys.stderr)
        before = measure_load(data_dir, expected, CLEANER_OFF if args.compact else None)
        result: dict[str, float | int] = dict(before)
        result.update(
            commits=args.commits,
            per_request=args.per_request,
            groups=args.groups,
            offsets_topic_mib=round(size / MiB, 1),
        )
        result["commits_per_s_loaded"] = round(args.commits / before["start_to_loaded_s"])
        if args.compact:
            partitions = BrokerConfig().offsets_topic_num_partitions
            holding = {records.partition_for(group, partitions) for group in expected}
            print(f"compacting {TOPIC} ({len(holding)} partitions hold commits)", file=sys.stderr)
            result.update(compact(data_dir, holding))
            after = offsets_topic_bytes(data_dir)
            subprocess.run(["sync"], check=False)
            print(f"starting the broker on {after / MiB:.2f} MiB of {TOPIC} (compacted)", file=sys.stderr)
            loaded = measure_load(data_dir, expected, CLEANER_OFF)
            result.update(
                {f"compacted_{key}": value for key, value in loaded.items()},
                compacted_offsets_topic_mib=round(after / MiB, 2),
            )
        print(json.dumps(result))
    finally:
        if not args.keep:
            shutil.rmtree(data_dir.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
