"""The transport limit for the API round trip: a bare asyncio line server on a Unix socket.

Run as `python -m bench.echo_server SOCKET` in its own process, like the core daemon. It
reads one line and answers one line whose length the request names in its first 8 bytes,
so the client can mimic the real API's request and reply sizes with no JSON and no engine:
what is left is sockets, the event loop and process switching.
"""

from __future__ import annotations

import asyncio
import os
import sys

MAX_LINE = 64 * 1024  # same stream limit as kiosk.api_server
FILLER = b"x" * MAX_LINE


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                break
            size = max(1, min(int(line[:8]), MAX_LINE))
            writer.write(FILLER[: size - 1] + b"\n")
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)
    server = await asyncio.start_unix_server(_serve, path=path, limit=MAX_LINE)
    print(f"READY socket={path}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
