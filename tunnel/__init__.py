"""Packet I/O: the TUN device and the UDP encapsulation between anycast nodes. Knows nothing of TCP."""
