"""Packet I/O: the TUN device and the UDP encapsulation between anycast nodes. Knows nothing of TCP.

``device`` (the interface the runtime uses), ``tun`` (the kernel's TUN), ``memory`` (two devices back to back),
``pcap`` (captures of what a device passes), ``netns`` (network namespaces for tests, the lab and benchmarks).
"""
