"""Transports: bytes on a connection to and from ProtocolSession calls, and nothing more."""
