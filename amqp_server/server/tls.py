"""The ``ssl.SSLContext`` of the amqps listener, from the ``tls_*`` settings of ``Config``.

TLS 1.2 or newer, the server's certificate chain and key, and — with
``tls_verify_peer`` — a client certificate signed by ``tls_ca`` is required
(RabbitMQ's ``verify_peer`` + ``fail_if_no_peer_cert``).  Without it, clients
need no certificate.
"""

from __future__ import annotations

import ssl

from ..config import Config


def server_context(config: Config) -> ssl.SSLContext | None:
    """The context for the amqps listener, or None when TLS is not configured."""
    if config.tls_cert is None and config.tls_key is None:
        if config.tls_verify_peer or config.tls_ca is not None:
            raise ValueError("TLS options given without a certificate: set tls_cert and tls_key")
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise ValueError("TLS needs both a certificate (tls_cert) and its private key (tls_key)")
    if config.tls_verify_peer and config.tls_ca is None:
        raise ValueError("tls_verify_peer needs tls_ca, the CA that signs client certificates")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key)
    if config.tls_ca is not None:
        context.load_verify_locations(cafile=config.tls_ca)
    context.verify_mode = ssl.CERT_REQUIRED if config.tls_verify_peer else ssl.CERT_NONE
    return context
