"""The ``ssl.SSLContext`` of the amqps listener, from the ``tls_*`` settings of ``Config``.

TLS 1.2 or newer, the server's certificate chain and key, and — with
``tls_verify_peer`` — a client certificate signed by ``tls_ca`` is required
(RabbitMQ's ``verify_peer`` + ``fail_if_no_peer_cert``).  Without it, clients
need no certificate.
"""

from __future__ import annotations

import ssl

from ..ops.config import Config
from ..ops.validation import check_tls_settings


def server_context(config: Config) -> ssl.SSLContext | None:
    """The context for the amqps listener, or None when TLS is not configured.

    ``load_config`` has checked which TLS settings go together; a ``Config`` built directly (embedding)
    is checked here by the same rule, and raises the same ``ConfigError`` (a ``ValueError``).
    """
    check_tls_settings(lambda key: getattr(config, key))
    if config.tls_cert is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key)
    if config.tls_ca is not None:
        context.load_verify_locations(cafile=config.tls_ca)
    context.verify_mode = ssl.CERT_REQUIRED if config.tls_verify_peer else ssl.CERT_NONE
    return context
