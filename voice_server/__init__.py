"""Network edge of Convergio Voice: HTTP API, WebSocket transport, sessions, CLI."""

__version__ = "0.1.0"
