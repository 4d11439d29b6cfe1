"""The native API for asyncio: `log = await tidelog.aio.open(path)`.

If the directory is not open in this process yet, its broker runs on the calling event loop;
`tail` is an async iterator that wakes when the high watermark moves.
"""

from tidelog.embedded.log import AsyncIdempotentProducer, AsyncLog
from tidelog.embedded.log import open_async as open
from tidelog.embedded.server import serve_async as serve

__all__ = ["AsyncIdempotentProducer", "AsyncLog", "open", "serve"]
