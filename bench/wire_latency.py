"""Produce round trips measured with a minimal single-threaded client (no client library).

    python bench/wire_latency.py --bootstrap 127.0.0.1:9092 --acks -1 --rate 3000 --requests 15000

Sends one 16-record batch of 1 KiB records per request at a fixed rate and times each response.
It shows the broker's own latency; client libraries add their own (bench/load.py).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import select
import socket
import struct
import time

import numpy as np
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.serial import entity_writer

from tidelog.protocol.record_batch import build_batch

RECORDS_PER_BATCH = 16
RECORD_BYTES = 1024


def frame(api_key: int, version: int, body: object, correlation_id: int) -> bytes:
    out = io.BytesIO()
    entity_writer(type(body))(out, body)
    client = b"wire-latency"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client)) + client + b"\x00"
    return struct.pack(">i", len(header) + out.tell()) + header + out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="wire-latency")
    parser.add_argument("--acks", type=int, default=-1)
    parser.add_argument("--rate", type=float, default=3000, help="requests/s")
    parser.add_argument("--requests", type=int, default=15000)
    args = parser.parse_args()
    host, port = args.bootstrap.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    topic = MetadataRequestTopic(topic_id=None, name=args.topic)
    sock.sendall(
        frame(
            3,
            12,
            MetadataRequest(topics=(topic,), allow_auto_topic_creation=True, include_topic_authorized_operations=False),
            -1,
        )
    )
    sock.recv(1 << 16)
    now = int(time.time() * 1000)
    batch = build_batch([(now, None, bytes(RECORD_BYTES), [])] * RECORDS_PER_BATCH)
    data = TopicProduceData(name=args.topic, partition_data=(PartitionProduceData(index=0, records=batch),))
    produce = ProduceRequest(
        transactional_id=None, acks=args.acks, timeout=datetime.timedelta(seconds=30), topic_data=(data,)
    )
    frames = [frame(0, 9, produce, i) for i in range(args.requests)]
    sent_at = [0.0] * args.requests
    latencies: list[float] = []
    buffer = bytearray()
    sock.setblocking(False)
    started = time.perf_counter()
    next_request = 0
    while len(latencies) < args.requests:
        due = started + next_request / args.rate
        now_s = time.perf_counter()
        if next_request < args.requests and now_s >= due:
            sent_at[next_request] = now_s
            sock.sendall(frames[next_request])
            next_request += 1
            continue
        timeout = max(0.0, due - now_s) if next_request < args.requests else 1.0
        if select.select([sock], [], [], timeout)[0]:
            buffer += sock.recv(1 << 20)
            arrived = time.perf_counter()
            while len(buffer) >= 8 and len(buffer) >= 4 + struct.unpack_from(">i", buffer)[0]:
                size, correlation_id = struct.unpack_from(">ii", buffer)
                latencies.append(arrived - sent_at[correlation_id])
                del buffer[: 4 + size]
    ms = np.array(latencies) * 1000
    mib_per_s = args.rate * len(batch) / (1 << 20)
    p50, p99, p999 = np.percentile(ms, [50, 99, 99.9])
    print(
        json.dumps(
            {
                "mode": "wire",
                "acks": args.acks,
                "mib_per_s": round(mib_per_s, 1),
                "p50_ms": round(p50, 3),
                "p99_ms": round(p99, 3),
                "p999_ms": round(p999, 3),
                "max_ms": round(float(ms.max()), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
