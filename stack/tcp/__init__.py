"""The sans-I/O TCP connection (RFC 9293): segments and ``now`` in, segments, events and deadlines out."""
