"""Kernel-TCP download client for the anycast lab; run it inside the lab's client namespace.

    client_main.py ADDRESS PORT [--connections C] [--bytes N] [--timeout S] [--family 4|6]

opens C connections at once, sends ``GET <N>\\n`` on each, reads to EOF and checks every byte against the lab
pattern as it arrives (a fixed buffer per connection: nothing holds a whole download). Prints one JSON line:

    {"connections": [{"bytes": n, "exact": bool, "error": null | "ECONNRESET" | "timeout" | "short" | "long" | …,
                      "first_mismatch": null | offset, "seconds": s}, …],
     "requested": N, "bytes": total, "exact": count, "errors": {name: count}, "elapsed": s, "gbit_s": rate}

``exact`` means exactly N bytes, all of them right, and no error. Exit status 0 when every connection is exact.
One thread per connection: recv_into releases the GIL and the check is a memcmp (pattern.verify), so a few Gbit/s
fit in one process.
"""

import argparse
import errno
import ipaddress
import json
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root, run as a script
from appliance import pattern

BUFFER = 256 * 1024  # bytes per recv_into, per connection


def error_name(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


def download(address: str, port: int, family: int, size: int, timeout: float) -> dict:
    started = time.perf_counter()
    received, exact, error, first_bad = 0, True, None, None
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect((address, port))
            sock.sendall(f"GET {size}\n".encode())
            while n := sock.recv_into(buffer):
                if exact and not pattern.verify(received, view[:n]):
                    exact, first_bad = False, pattern.first_mismatch(received, view[:n])
                received += n
    except Exception as exc:
        error = error_name(exc)
    if error is None and received != size:
        error = "short" if received < size else "long"
    return {
        "bytes": received,
        "exact": exact and error is None,
        "error": error,
        "first_mismatch": first_bad,
        "seconds": round(time.perf_counter() - started, 6),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address")
    parser.add_argument("port", type=int)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--bytes", type=int, default=10_000_000, help="bytes to ask for on each connection")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a connection may sit idle")
    parser.add_argument("--family", type=int, choices=(4, 6), help="default: the address's own")
    args = parser.parse_args(argv)
    version = ipaddress.ip_address(args.address).version
    if args.family is not None and args.family != version:
        parser.error(f"--family {args.family} but {args.address} is an IPv{version} address")
    family = socket.AF_INET if version == 4 else socket.AF_INET6

    results: list[dict] = [{} for _ in range(args.connections)]

    def run(i: int) -> None:
        results[i] = download(args.address, args.port, family, args.bytes, args.timeout)

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(args.connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started

    total = sum(r["bytes"] for r in results)
    errors: dict[str, int] = {}
    for r in results:
        if r["error"] is not None:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    exact = sum(r["exact"] for r in results)
    summary = {
        "connections": results,
        "requested": args.bytes,
        "bytes": total,
        "exact": exact,
        "errors": errors,
        "elapsed": round(elapsed, 6),
        "gbit_s": round(total * 8 / elapsed / 1e9, 3) if elapsed > 0 else None,
    }
    print(json.dumps(summary), flush=True)
    return 0 if exact == args.connections else 1


if __name__ == "__main__":
    sys.exit(main())
