#!/usr/bin/env python3
"""What one decrypted read costs: into a new 256 KiB bytes object, as uvloop does for a plain
`asyncio.Protocol`, or into a buffer, as it does for a `BufferedProtocol`
(webhook/server/reads.py). In process, over memory BIOs: OpenSSL's work and the allocation,
no socket.

    .venv/bin/python benchmarks/tls_reads.py            # µs of CPU per read, best of 5

It applies the mmap threshold the webhook fixes at start-up (server/allocator.py), as the
server runs with it; `--no-threshold` leaves glibc's dynamic one.
"""

from __future__ import annotations

import argparse
import contextlib
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READ_MAX = 256 * 1024  # uvloop's SSL_READ_MAX_SIZE
RECORD = b"x" * 900  # about a small review's share of one TLS record


def _pair(directory: Path) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.SSLObject, ssl.MemoryBIO]:
    subprocess.run(
        [sys.executable, "-m", "webhook", "certs", "--dir", str(directory), "--local"],
        check=True,
        capture_output=True,
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    client_context = ssl.create_default_context(cafile=directory / "ca.crt")
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    client = client_context.wrap_bio(client_in, client_out, server_hostname="localhost")
    for _ in range(10):  # the handshake, by hand
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        server_in.write(client_out.read())
        client_in.write(server_out.read())
    return server, server_in, client, client_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--no-threshold", action="store_true")
    args = parser.parse_args()
    if not args.no_threshold:
        from webhook.server.allocator import fix_mmap_threshold

        fix_mmap_threshold()
    with tempfile.TemporaryDirectory() as tmp:
        server, server_in, client, client_out = _pair(Path(tmp))
        buffer = bytearray(64 * 1024)
        for mode in ("new bytes object (256 KiB asked)", "into a buffer"):
            best = float("inf")
            for _ in range(5):
                records = []
                for _ in range(args.reads):
                    client.write(RECORD)
                    records.append(client_out.read())
                started = time.process_time()
                for record in records:
                    server_in.write(record)
                    if mode.startswith("new"):
                        server.read(READ_MAX)
                    else:
                        server.read(len(buffer), buffer)
                best = min(best, time.process_time() - started)
            print(f"{mode:34} {best / args.reads * 1e6:6.2f} µs per read")
    return 0


if __name__ == "__main__":
    sys.exit(main())
