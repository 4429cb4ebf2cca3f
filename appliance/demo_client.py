"""The lab demo's client: one download over the kernel's TCP, every byte checked against the demo pattern.

    python -m appliance.demo_client HOST PORT NBYTES [--every 0.1] [--idle-timeout 10]

Run inside the lab's client namespace. It sends ``GET <NBYTES>\\n``, reads to EOF and checks each byte as it
arrives (one fixed buffer: nothing holds the whole download). On stdout, one JSON object per line:

    {"event": "connected", "t": …}                                      once the handshake is done
    {"event": "progress", "bytes": n, "resets": 0, "error": null, "t": …}   every ``--every`` seconds
    {"event": "result", "bytes": n, "requested": N, "exact": bool, "resets": r, "error": null | "ECONNRESET" |
     "timeout" | "short" | "long" | "mismatch" | …, "first_mismatch": null | offset, "error_at": null | t,
     "seconds": s, "t": …}

``t`` and ``error_at`` are ``time.monotonic()``, one clock for every process on the machine, so the demo can tell
which route move a reset followed. The first error ends the download: without anycast the first reset is the
whole story. Exit status 0 when exactly NBYTES arrived, all of them right.
"""

import argparse
import errno
import json
import socket
import sys
import time

from appliance.pattern import first_mismatch, verify

BUFFER = 256 * 1024  # bytes per recv_into
TICK = 0.05  # the socket's timeout: how often the loop looks up from recv to report progress


def error_name(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def download(host: str, port: int, size: int, every: float, idle_timeout: float, connect_timeout: float) -> dict:
    started = time.monotonic()
    received, resets, error, error_at, bad_at = 0, 0, None, None, None
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    try:
        with socket.create_connection((host, port), timeout=connect_timeout) as sock:
            emit(event="connected", t=time.monotonic())
            sock.settimeout(TICK)
            sock.sendall(f"GET {size}\n".encode())
            last_data = last_report = time.monotonic()
            while True:
                try:
                    n = sock.recv_into(buffer)
                except TimeoutError:
                    n = -1
                now = time.monotonic()
                if n == 0:
                    break
                if n > 0:
                    if not verify(received, view[:n]):
                        bad_at = first_mismatch(received, view[:n])
                        error, error_at = "mismatch", now
                        break
                    received += n
                    last_data = now
                elif now - last_data > idle_timeout:
                    raise TimeoutError(f"nothing for {idle_timeout} s")
                if now - last_report >= every:
                    emit(event="progress", bytes=received, resets=resets, error=None, t=now)
                    last_report = now
    except OSError as exc:
        error, error_at = error_name(exc), time.monotonic()
        if isinstance(exc, ConnectionResetError):
            resets += 1
    if error is None and received != size:
        error = "short" if received < size else "long"
    return {
        "event": "result",
        "bytes": received,
        "requested": size,
        "exact": error is None,
        "resets": resets,
        "error": error,
        "first_mismatch": bad_at,
        "error_at": error_at,
        "seconds": round(time.monotonic() - started, 6),
        "t": time.monotonic(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("nbytes", type=int)
    parser.add_argument("--every", type=float, default=0.1, help="seconds between progress lines")
    parser.add_argument("--idle-timeout", type=float, default=10.0, help="seconds without a byte before giving up")
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.nbytes < 0:
        parser.error("NBYTES must be 0 or more")
    result = download(args.host, args.port, args.nbytes, args.every, args.idle_timeout, args.connect_timeout)
    emit(**result)
    return 0 if result["exact"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
