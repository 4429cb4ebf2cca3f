"""The library form: ``from appliance import Node`` embeds a node in an asyncio program, which serves on it with the
stack's own API; ``capture`` records what crossed the TUN."""

import asyncio
import os
import sys

import dpkt
import pytest

from appliance import Node
from appliance.config import parse
from tests.conftest import require
from tunnel.netns import NetNamespace

SERVICE, CLIENT = "192.0.2.78", "198.51.100.78"

CLIENT_SCRIPT = """
import socket, sys
s = socket.create_connection((sys.argv[1], 9), timeout=10, source_address=(sys.argv[2], 0))
s.sendall(b"ping")
s.shutdown(socket.SHUT_WR)
print(s.recv(100).decode())
"""


async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write((await reader.read()).upper())
    await writer.drain()
    writer.close()


@pytest.mark.root
def test_an_application_serves_on_an_embedded_node_and_the_capture_records_it(tmp_path):
    require(os.geteuid() == 0, "needs root for a network namespace and a TUN device")
    config = parse(
        f'[node]\nid = 4\ncontrol_socket = ""\n[tun]\nname = "atlib0"\naddresses = ["{SERVICE}/32"]\n',
        source="embedded",
    )
    pcap = tmp_path / "node.pcap"

    async def main(ns: NetNamespace) -> str:
        async with await Node.start(config, netns=ns, capture=str(pcap)) as node:
            server = await node.start_server(upper, SERVICE, 9)
            client = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", ns.name, sys.executable, "-c", CLIENT_SCRIPT, SERVICE, CLIENT,
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(client.communicate(), 20)
            assert node.status()["node"] == 4
            server.close()
            return out.decode().strip()

    with NetNamespace.create("tlib") as ns:
        ns.ip("addr", "add", f"{CLIENT}/32", "dev", "lo")
        assert asyncio.run(main(ns)) == "PING"
        assert "atlib0" not in ns.ip("link", "show")  # stopping the node took its TUN away

    with open(pcap, "rb") as f:
        # The kernel's own IPv6 chatter on the TUN (router solicitations, MLD) is in there too.
        packets = [dpkt.ip.IP(buf) for _, buf in dpkt.pcap.Reader(f) if buf[0] >> 4 == 4]
    tcp = [p.data for p in packets if isinstance(p.data, dpkt.tcp.TCP)]
    assert any(t.flags & dpkt.tcp.TH_SYN and t.dport == 9 for t in tcp)  # the client's SYN, read from the TUN
    assert any(t.sport == 9 and bytes(t.data) == b"PING" for t in tcp)  # our answer, written to it
