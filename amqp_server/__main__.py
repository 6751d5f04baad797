"""``python -m amqp_server``: see ``cli``."""

import sys

from .cli import main

sys.exit(main())
