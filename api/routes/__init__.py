"""Endpoint modules; each exposes ``ROUTES`` for ``api.app.route_table``."""
