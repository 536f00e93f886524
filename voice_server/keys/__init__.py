"""Provider keys a school brings (Azure Speech, Azure OpenAI, an OpenAI-compatible server).

vault.py    the server secret and the Fernet encryption of keys at rest; rotation
store.py    the provider_keys table: create, list, delete, replace a secret, re-encrypt all
resolver.py what engine adapters call: a key id in, its secret out (refused in privacy mode)
routes.py   the admin HTTP API under /api/v1/keys

A key's secret is written once (create, or replace) and read only by `resolve`: never logged,
never in an HTTP response, never sent to the browser.
"""
