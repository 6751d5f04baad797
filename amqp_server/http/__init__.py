"""RabbitMQ's management HTTP API (port 15672), served on the broker's own event loop by aiohttp.

The second adapter beside ``server/``: it may use asyncio, and it sees the broker only
through ``core.operations.BrokerOperations`` (plus ``ops.access`` to persist users,
vhosts and permissions) — ``tests/test_layering.py`` checks that.

- ``app``: ``create_app(Context)`` (middlewares: RabbitMQ's error bodies, a change answered
  after its store sync, Basic auth and tags) and ``start`` (binds a ``web.TCPSite``);
  ``server/management_site.py`` wires it to a running broker.
- ``context``: the shared ``Context``, who is calling, vhost visibility, JSON helpers and
  ``add`` (every route also answers with a trailing slash, and GET answers HEAD).
- ``listing``: page / sort / columns / name filters, pure functions.
- one module per family of endpoints, each with ``add_routes(router)``: ``overview``
  (node-wide, health checks), ``access_api`` (vhosts, users, permissions),
  ``entities`` (exchanges, queues, bindings), ``sessions`` (connections, channels,
  consumers, definitions), ``dashboard`` (the web UI's files from ``static/`` at ``/``, the
  only paths served without credentials, with a Content-Security-Policy).  A new family
  (policies) is a new module listed in ``app.create_app``; new fields of an object
  (``message_stats``) belong in the info dicts ``BrokerOperations`` builds, so every
  endpoint showing the object gets them.
"""
