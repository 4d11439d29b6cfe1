"""tidelog: a Kafka-compatible log broker for people who live in Python.

`tidelog.open(path)` opens a data directory in this process (the native API);
`tidelog.embedded.serve(path)` serves it to Kafka clients on loopback; `tidelog serve` is the
standalone broker. Names are imported on first use, so `import tidelog` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "open": "tidelog.embedded.log",
    "Log": "tidelog.embedded.log",
    "AppendRecord": "tidelog.embedded.log",
    "Record": "tidelog.protocol.record_batch",
    "serve": "tidelog.embedded.server",
}

if TYPE_CHECKING:
    from tidelog.embedded.log import AppendRecord, Log, open
    from tidelog.embedded.server import serve
    from tidelog.protocol.record_batch import Record

__all__ = ["AppendRecord", "Log", "Record", "open", "serve"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tidelog' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
