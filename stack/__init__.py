"""anycast-tcp's TCP/IP host: wire formats, sequence arithmetic, the sans-I/O TCP core and the host demux."""
