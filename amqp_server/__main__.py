"""``python -m amqp_server``: see ``ops.cli``."""

import sys

from .ops.cli import main

sys.exit(main())
