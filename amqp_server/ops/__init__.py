"""Operations: everything around the broker that an operator or a test suite touches.

- ``config``: the one frozen ``Config`` from flags, environment variables and a TOML file;
- ``access``: users, vhosts and permissions on disk (``access.json``), applied at start and reloaded;
- ``definitions``: RabbitMQ's definitions JSON, export and import;
- ``validation``: each rule the config file, the CLI and definitions import share, written once;
- ``errors``: one exception type per kind of error (``ConfigError``, ``DefinitionsError``, ``AccessError``);
- ``embedding``: ``amqp_server.running()``, a real broker inside a test suite; ``pytest_plugin`` its fixtures;
- ``cli``: ``amqp-server`` and its admin subcommands; ``healthcheck``: the Docker image's HEALTHCHECK;
- ``logging``: text or JSON log lines.
"""
