"""Two Hosts over a seeded faulty link, driven by hypothesis: whole connections under loss, duplication,
reordering, delay and bit corruption, with the application calling send, shutdown, close and abort at random.

Invariants: the bytes received are a prefix of the bytes sent; SND.UNA never passes SND.NXT; no deadline lies
in the past; no exception escapes. Once the link heals and both applications close, both ends finish in
CLOSED or TIME-WAIT with every byte delivered (unless someone aborted).
"""

import dataclasses
import random

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from stack.host import Host
from stack.seq import seq_le
from stack.tcp.config import TcpConfig
from stack.tcp.connection import Connection
from stack.tcp.events import Closed, CloseReason, DataReceived, Established, SendSpace
from stack.tcp.state import State
from stack.testing import LinkFaults, Network

ADDRS = {4: ("10.0.0.1", "10.0.0.2"), 6: ("fd00::1", "fd00::2")}
PORT = 8080
CONFIG = TcpConfig(send_buffer=32 * 1024, receive_buffer=16 * 1024)
# Each side offers its own mix of the extensions, algorithm and Nagle, so every negotiation outcome is exercised.
configs = st.builds(
    dataclasses.replace,
    st.just(CONFIG),
    window_scaling=st.booleans(),
    timestamps=st.booleans(),
    sack=st.booleans(),
    nodelay=st.booleans(),
    congestion_control=st.sampled_from(["cubic", "reno"]),
    receive_buffer=st.sampled_from([4 * 1460, 16 * 1024, 256 * 1024]),
)

faults = st.builds(
    LinkFaults,
    loss=st.sampled_from([0.0, 0.01, 0.05, 0.2]),
    duplicate=st.sampled_from([0.0, 0.02, 0.1]),
    reorder=st.sampled_from([0.0, 0.05, 0.2]),
    corrupt=st.sampled_from([0.0, 0.001, 0.05]),
    delay=st.sampled_from([0.0005, 0.01, 0.08]),
    jitter=st.sampled_from([0.0, 0.005]),
)


class TwoHosts(RuleBasedStateMachine):
    @initialize(
        seed=st.integers(0, 2**32),
        family=st.sampled_from([4, 6]),
        there=faults,
        back=faults,
        may_abort=st.sampled_from([False, False, False, True]),
        backlog=st.tuples(*[st.sampled_from([0, 1, 3000, 100_000, 600_000])] * 2),
        configs=st.tuples(*[configs] * 2),
        tso=st.tuples(*[st.sampled_from([0, 0, 65455])] * 2),  # segmentation offload, cut apart on the link
    )
    def start(self, seed, family, there, back, may_abort, backlog, configs, tso):
        client_addr, server_addr = ADDRS[family]
        self.rng = random.Random(seed)
        self.net = Network(seed)
        self.client = Host([client_addr], secret=b"client-secret-16", config=configs[0])
        self.server = Host([server_addr], secret=b"server-secret-16", config=configs[1])
        self.client.tso_limit, self.server.tso_limit = tso
        self.server.listen(PORT)
        self.conns: dict[str, Connection | None] = {"client": None, "server": None}
        self.sent = {"client": bytearray(), "server": bytearray()}  # by sender
        self.received = {"client": bytearray(), "server": bytearray()}  # by receiver
        self.closed: dict[str, CloseReason | None] = {"client": None, "server": None}
        self.shut = {"client": False, "server": False}
        self.want_shut = {"client": False, "server": False}
        self.pending = {
            "client": bytearray(self.rng.randbytes(backlog[0])),
            "server": bytearray(self.rng.randbytes(backlog[1])),
        }
        self.aborted = False
        self.may_abort = may_abort
        self.net.add_host("client", self.client, app=self._app("client"))
        self.net.add_host("server", self.server, app=self._app("server"))
        self.net.connect("client", "server", there, back)
        self.conns["client"] = self.client.connect(server_addr, PORT, self.net.now)
        # Most runs should spend their steps on data: let the handshake finish first (at 20% loss it may not).
        self.net.run(until=lambda: self.conns["server"] is not None, max_time=10, max_steps=10_000)

    def _app(self, name):
        def on_event(host, conn, event):
            if isinstance(event, Established) and self.conns[name] is None:
                self.conns[name] = conn
                self._pump(name)
            elif isinstance(event, SendSpace):
                self._pump(name)
            elif isinstance(event, DataReceived):
                self.received[name] += event.data
            elif isinstance(event, Closed):
                self.closed[name] = event.reason

        return on_event

    def _open(self, name) -> Connection | None:
        conn = self.conns[name]
        if conn is None or self.shut[name] or conn.state not in (State.ESTABLISHED, State.CLOSE_WAIT):
            return None
        return conn

    def _pump(self, who):
        """The application: write what the connection takes of the backlog; shut down once it is empty and a
        shutdown was asked for."""
        conn = self._open(who)
        if conn is None:
            return
        pending = self.pending[who]
        if pending:
            taken = conn.send(bytes(pending[:65536]))
            self.sent[who] += pending[:taken]
            del pending[:taken]
        if not pending and self.want_shut[who]:
            conn.shutdown_write(self.net.now)
            self.shut[who] = True

    # -- application rules ----------------------------------------------------------------------------------

    @rule(who=st.sampled_from(["client", "server"]), n=st.integers(1, 40_000))
    def send(self, who, n):
        if not self.want_shut[who]:
            self.pending[who] += self.rng.randbytes(n)
        self._pump(who)

    @rule(who=st.sampled_from(["client", "server"]))
    def shutdown_write(self, who):
        self.want_shut[who] = True
        self._pump(who)

    @precondition(lambda self: self.may_abort and not self.aborted)
    @rule(who=st.sampled_from(["client", "server"]))
    def abort(self, who):
        conn = self.conns[who]
        if conn is not None:
            conn.abort(self.net.now)
            self.aborted = True

    # -- network and time rules -----------------------------------------------------------------------------

    @rule(steps=st.integers(1, 200))
    def advance(self, steps):
        for _ in range(steps):
            if not self.net.step():
                break

    @rule(seconds=st.sampled_from([0.05, 0.5, 3.0]))
    def advance_time(self, seconds):
        deadline = self.net.now + seconds
        self.net.run(until=lambda: self.net.now >= deadline, max_steps=5_000)

    @rule(direction=st.sampled_from([("client", "server"), ("server", "client")]), new=faults)
    def change_link(self, direction, new):
        self.net.links[direction].set_faults(new)

    # -- invariants -----------------------------------------------------------------------------------------

    @invariant()
    def received_is_a_prefix_of_sent(self):
        for sender, receiver in (("client", "server"), ("server", "client")):
            got = self.received[receiver]
            assert self.sent[sender][: len(got)] == got

    @invariant()
    def snd_una_never_passes_snd_nxt(self):
        for conn in self.conns.values():
            if conn is not None:
                assert seq_le(conn.tx.snd_una, conn.tx.snd_nxt)

    @invariant()
    def scoreboard_is_consistent(self):
        """The SACK scoreboard's counters match its records; nothing is both SACKed and presumed lost; nothing
        below SND.UNA is kept; the pipe is never negative."""
        for conn in self.conns.values():
            if conn is None:
                continue
            tx = conn.tx
            board = list(tx.board)
            assert tx.board.sacked_bytes == sum(r.end - r.start for r in board if r.sacked)
            assert tx.board.lost_bytes == sum(r.end - r.start for r in board if r.lost)
            assert not any(r.sacked and r.lost for r in board)
            assert all(r.start >= tx.una_off for r in board)
            assert tx.pipe >= 0

    @invariant()
    def no_deadline_in_the_past(self):
        for host in (self.client, self.server):
            deadline = host.get_timer()
            assert deadline is None or deadline > self.net.now

    def teardown(self):
        if not hasattr(self, "net"):
            return
        for direction in self.net.links:
            self.net.links[direction].set_faults(LinkFaults(delay=0.01))
        # Let the backlogs drain, then half-close both ends so every byte in flight must arrive and nothing is
        # left to reset.
        for who in self.want_shut:
            self.want_shut[who] = True
            self._pump(who)
        self.net.run(until=lambda: not any(self.pending.values()) or self.aborted, max_time=self.net.now + 600)
        for conn in self.conns.values():
            if conn is None:
                continue
            if conn.state in (State.ESTABLISHED, State.CLOSE_WAIT):
                conn.shutdown_write(self.net.now)
            elif conn.state in (State.SYN_SENT, State.SYN_RECEIVED):
                conn.close(self.net.now)

        def finished():
            return all(c is None or c.state in (State.CLOSED, State.TIME_WAIT) for c in self.conns.values())

        self.net.run(until=finished, max_time=self.net.now + 400)
        # A half-closed end whose peer vanished (its RST lost) waits for a FIN forever, as TCP must; the
        # application then closes for good, which bounds FIN-WAIT-2 (60 s) and everything else (R2, 300 s).
        for conn in self.conns.values():
            if conn is not None and conn.state not in (State.CLOSED, State.TIME_WAIT):
                conn.close(self.net.now)
        self.net.run(until=finished, max_time=self.net.now + 1000)
        for name, conn in self.conns.items():
            assert conn is None or conn.state in (State.CLOSED, State.TIME_WAIT), f"{name} stuck in {conn.state}"
        # A connection that gave up (R2 reached while 20% loss each way ate five retransmissions in a row, say)
        # legitimately leaves data undelivered, as a reset or an abort does: the application was told.
        gave_up = (CloseReason.RESET, CloseReason.ABORTED, CloseReason.TIMED_OUT)
        reset = self.aborted or any(r in gave_up for r in self.closed.values())
        moved = len(self.received["client"]) + len(self.received["server"])
        event("outcome: " + ("reset" if reset else "clean close"))
        event("bytes delivered: " + ("none" if not moved else "< 100 KB" if moved < 100_000 else ">= 100 KB"))
        if not reset and self.conns["server"] is not None:
            assert self.received["server"] == self.sent["client"]
            assert self.received["client"] == self.sent["server"]


TestTwoHosts = TwoHosts.TestCase
