#!/usr/bin/env python3
"""Run a real single-node Apache Kafka (KRaft, broker+controller in one JVM) as a
reference for tidelog.  Python stdlib only.

    python3 bench/kafka/reference_broker.py --port 19092 [--data-dir DIR]

runs it in the foreground until Ctrl-C.  From Python:

    import reference_broker as rb
    proc = rb.start("/tmp/kref", 19092)   # returns once the broker is serving
    ...
    rb.stop(proc)                          # SIGTERM (clean shutdown), then SIGKILL

Layout under data_dir: server.properties, log4j2.properties, server.log,
logs/ (log.dirs: topic partitions + checkpoint files), meta/ (__cluster_metadata).
An already formatted data_dir is reused as is.  Jars come from
<repo>/.cache/kafka/libs (bench/kafka/fetch.sh is run first; it is idempotent).
"""

import argparse
import base64
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LIBS = ROOT / ".cache" / "kafka" / "libs"
CLASSPATH = str(LIBS / "*")
READY_LINE = "Kafka Server started"

LOG4J2 = """\
status = warn
appender.out.type = File
appender.out.name = OUT
appender.out.fileName = {log}
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
"""


def java() -> str:
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else "java"


def fetch() -> None:
    subprocess.run(["bash", str(HERE / "fetch.sh")], check=True, stdout=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_properties(data: Path, port: int, controller_port: int, settings: dict | None = None) -> str:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data / "logs"),
        "metadata.log.dir": str(data / "meta"),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        **(settings or {}),
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def start(data_dir, port: int = 19092, timeout: float = 90.0, settings: dict | None = None) -> subprocess.Popen:
    """Format (first time) and start the broker; return once it serves on 127.0.0.1:port.
    `settings` are extra server.properties, written when the directory is first formatted."""
    fetch()
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    conf, log = data / "server.properties", data / "server.log"
    if not (data / "meta" / "meta.properties").exists():
        conf.write_text(server_properties(data, port, free_port(), settings))
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        subprocess.run(
            [
                java(),
                "-cp",
                CLASSPATH,
                "kafka.tools.StorageTool",
                "format",
                # One argument with "=": an id may start with "-", which argparse takes for an option.
                f"--cluster-id={cluster_id}",
                "-c",
                str(conf),
                "--standalone",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    (data / "log4j2.properties").write_text(LOG4J2.format(log=log))
    offset = log.stat().st_size if log.exists() else 0
    with open(data / "stdout.log", "ab") as out:  # JVM output not going through log4j
        proc = subprocess.Popen(
            [
                java(),
                "-Xms256m",
                "-Xmx1g",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={data / 'log4j2.properties'}",
                "-cp",
                CLASSPATH,
                "kafka.Kafka",
                str(conf),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # Ctrl-C goes to us; we stop kafka cleanly
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kafka exited with {proc.returncode}; see {log}")
        if log.exists():
            with open(log, "rb") as f:
                f.seek(offset)
                started = READY_LINE.encode() in f.read()
            if started and _port_open(port):
                return proc
        time.sleep(0.2)
    stop(proc)
    raise TimeoutError(f"kafka not ready on 127.0.0.1:{port} after {timeout}s; see {log}")


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def stop(proc: subprocess.Popen, timeout: float = 60.0) -> int:
    """SIGTERM (Kafka's clean, controlled shutdown), then SIGKILL after timeout."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=19092)
    ap.add_argument("--data-dir", help="default: a new temp dir under /tmp")
    args = ap.parse_args()
    data = args.data_dir or tempfile.mkdtemp(prefix="kafka-ref-", dir="/tmp")
    proc = start(data, args.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SIGTERM also stops kafka
    print(
        f"kafka up on 127.0.0.1:{args.port} pid={proc.pid} data={data} log={Path(data) / 'server.log'} (Ctrl-C stops)",
        flush=True,
    )
    try:
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        print(f"kafka stopped, exit code {stop(proc)}", flush=True)


if __name__ == "__main__":
    main()
