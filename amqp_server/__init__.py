"""amqp_server: a RabbitMQ-compatible AMQP 0-9-1 broker in Python.

Layers: ``wire`` (framing and codecs, sans-IO), ``core`` (connection/channel state
machines and the broker model, sans-IO), ``server`` (the asyncio adapter), and
the ``storage`` package beside this one.
"""

__version__ = "0.1.0"
