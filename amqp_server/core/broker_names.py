"""RabbitMQ-style generated names: ``amq.gen-``, ``amq.ctag-``… and 22 URL-safe base64 characters."""

from __future__ import annotations

import base64
import os


def generated_name(prefix: str) -> str:
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
