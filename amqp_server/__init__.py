"""amqp_server: a RabbitMQ-compatible AMQP 0-9-1 broker in Python.

Layers: ``wire`` (framing and codecs, sans-IO), ``core`` (connection/channel state
machines and the broker model, sans-IO), ``server`` (the asyncio adapter),
``ops`` (configuration, access control, definitions, embedding, CLI, healthcheck,
logging), and the ``storage`` package beside this one.
"""

__version__ = "0.1.0"


def __getattr__(name: str):  # lazy: `import amqp_server` (and so pytest's plugin loading) stays cheap
    if name in ("running", "RunningBroker"):
        from .ops import embedding

        return getattr(embedding, name)
    raise AttributeError(f"module 'amqp_server' has no attribute {name!r}")
