"""Linux network namespaces for tests, the lab and benchmarks: create one, work inside it, and always remove it.

Everything is configured with iproute2's ``ip`` in a subprocess, not with pyroute2: Debian's iproute2 is on every
machine here and in CI, so it costs no extra dependency, and a failing step is a command anyone can paste into a
shell to reproduce it. None of this is on a per-packet path.

Python 3.11 has no ``os.setns`` (3.12 adds it), so ``call_inside`` calls libc's ``setns`` through ctypes. setns
moves only the calling thread, so each call runs in a fresh thread that enters the namespace, does its work and
ends; a socket or TUN device created there stays in that namespace after the thread is gone.
"""

import contextlib
import ctypes
import os
import secrets
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

from ._checks import check_cidr, check_prefix

CLONE_NEWNET = 0x40000000  # <sched.h>: the nstype argument of setns for a network namespace
NETNS_RUN_DIR = "/run/netns"  # where `ip netns add` bind-mounts a named namespace
TERMINATE_GRACE = 2.0  # seconds a process has to exit after SIGTERM before it gets SIGKILL

T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def run_ip(args: Sequence[str], *, netns: str | None = None, check: bool = True) -> str:
    """Run ``ip [-n netns] args...`` and return its stdout; with ``check`` a failure raises RuntimeError carrying
    the command line and ip's own error message."""
    argv = ["ip", *(("-n", netns) if netns is not None else ()), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise RuntimeError("iproute2's `ip` command was not found: install it (apt-get install iproute2)") from None
    if check and done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {done.stderr.strip()}")
    return done.stdout


def ip_address_args(address: str, dev: str) -> list[str]:
    """``ip addr add`` arguments for ``address`` (CIDR) on ``dev``. IPv6 addresses get ``nodad``: duplicate address
    detection would hold them tentative (unusable) for a second or more on a link where we own every address."""
    interface = check_cidr(address)
    args = ["addr", "add", str(interface), "dev", dev]
    if interface.version == 6:
        args.append("nodad")
    return args


class NetNamespace:
    """A named network namespace that this process created and will delete. Make one with ``create()``; use it as
    a context manager (or call ``close()``) so that it goes away even when the code inside fails. Closing also
    ends every process started with ``popen`` (by its PID), and with the namespace go its interfaces, addresses
    and routes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._processes: list[subprocess.Popen] = []
        self._closed = False

    @classmethod
    def create(cls, prefix: str = "atcp") -> "NetNamespace":
        """``ip netns add <prefix><8 random hex digits>`` with ``lo`` up."""
        name = check_prefix(prefix) + secrets.token_hex(4)
        run_ip(["netns", "add", name])
        ns = cls(name)
        try:
            ns.ip("link", "set", "lo", "up")
        except BaseException:
            ns.close()
            raise
        return ns

    @property
    def path(self) -> str:
        return os.path.join(NETNS_RUN_DIR, self.name)

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def ip(self, *args: str, check: bool = True) -> str:
        """``ip -n <name> args...``; returns stdout, raises RuntimeError with ip's message on failure if ``check``."""
        self._check_open()
        return run_ip(args, netns=self.name, check=check)

    def run(self, argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
        """``subprocess.run`` of ``ip netns exec <name> argv...``; keyword arguments go to subprocess.run."""
        return subprocess.run(self._exec_argv(argv), **kwargs)

    def popen(self, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start ``argv`` inside the namespace and track it: ``close()`` ends it. ``ip netns exec`` replaces itself
        with the program (it execs without forking), so the returned PID is the program's own. Only that PID is
        ended: a program that starts children must end them itself."""
        process = subprocess.Popen(self._exec_argv(argv), **kwargs)
        self._processes.append(process)
        return process

    def call_inside(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
        """Run ``fn(*args, **kwargs)`` in a new thread that has entered this namespace; return its result or raise its
        exception here. Sockets and TUN devices it creates belong to the namespace."""
        self._check_open()
        outcome: dict[str, object] = {}

        def enter_and_call() -> None:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        errno = ctypes.get_errno()
                        raise OSError(errno, f"setns into network namespace {self.name}: {os.strerror(errno)}")
                finally:
                    os.close(fd)
                outcome["result"] = fn(*args, **kwargs)
            except BaseException as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=enter_and_call, name=f"netns-{self.name}", daemon=True)
        thread.start()
        thread.join()
        if "error" in outcome:
            error = outcome.pop("error")
            assert isinstance(error, BaseException)
            raise error
        return outcome["result"]  # type: ignore[return-value]

    def close(self) -> None:
        """End tracked processes (SIGTERM, then SIGKILL after a grace period), then ``ip netns del``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._end_processes()
        finally:
            run_ip(["netns", "del", self.name], check=False)
            if self.exists():
                raise RuntimeError(f"network namespace {self.name} is still there after `ip netns del {self.name}`")

    def _end_processes(self) -> None:
        processes, self._processes = self._processes, []
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(TERMINATE_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()

    def _exec_argv(self, argv: Sequence[str]) -> list[str]:
        self._check_open()
        if isinstance(argv, str | bytes):
            raise ValueError(f"argv must be a list like ['ping', '-c1', '10.1.0.1'], not the string {argv!r}")
        return ["ip", "netns", "exec", self.name, *argv]

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"network namespace {self.name} is closed")

    def __enter__(self) -> "NetNamespace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<NetNamespace {self.name}{' closed' if self._closed else ''}>"


class Veth(NamedTuple):
    name_a: str  # the end in ns_a
    name_b: str  # the end in ns_b


def veth(ns_a: NetNamespace, ns_b: NetNamespace, addr_a: str, addr_b: str, *, prefix: str = "atcp") -> Veth:
    """Join two namespaces with a veth pair named ``<prefix><8 hex>a`` / ``…b``, give each end its CIDR address,
    and bring both up (kernel-to-kernel links for benchmarks and the lab). The pair goes away with either
    namespace; if a step fails, the pair is deleted before the error is raised."""
    check_cidr(addr_a)  # both checked before anything is created
    check_cidr(addr_b)
    stem = check_prefix(prefix) + secrets.token_hex(4)
    name_a, name_b = stem + "a", stem + "b"
    ns_a.ip("link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", ns_b.name)
    try:
        ns_a.ip(*ip_address_args(addr_a, name_a))
        ns_b.ip(*ip_address_args(addr_b, name_b))
        ns_a.ip("link", "set", name_a, "up")
        ns_b.ip("link", "set", name_b, "up")
    except BaseException:
        ns_a.ip("link", "del", name_a, check=False)
        raise
    return Veth(name_a, name_b)
