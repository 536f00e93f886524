"""The streaming stages of a voice turn. Nothing here knows about networks or transports."""
