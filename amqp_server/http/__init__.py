"""RabbitMQ's management HTTP API (port 15672), served on the broker's own event loop by aiohttp.

The second adapter beside ``server/``: it may use asyncio, and it sees the broker only
through ``core.operations.BrokerOperations`` (plus ``ops.access`` to persist users,
vhosts and permissions).  ``app.create_app`` builds the aiohttp application,
``app.start`` binds it; the routes live in one module per family of endpoints.
"""
