"""The browser client: static files served by the server at `/` (no build step, no CDN)."""
