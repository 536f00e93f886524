"""Accounts and signed access: who may call which endpoint, socket and WebRTC offer.

tokens.py    signed, short-lived access tokens (role, opaque subject, optional classroom)
secret.py    the signing secret kept in the data directory when none is configured
onetime.py   single-use codes: student sign-in links and WebSocket tickets
passwords.py argon2 password hashing
accounts.py  teacher and admin accounts in the database
guard.py     FastAPI dependencies that check a request's token and role
websocket.py the WebSocket handshake check: Origin, then a ticket or a bearer token
routes.py    sign-in, link redemption, ticket and sign-out endpoints; an admin's revoke
ratelimit.py failed sign-ins counted per address and username (429 past the limit)
revocation.py revoked tokens (sign-out, revoke all of a subject), in the database
redact.py    a logging filter that keeps one-time tickets out of access logs
"""
