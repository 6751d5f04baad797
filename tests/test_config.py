"""Configuration: flag > environment > TOML file > default, validation that names the key, the file's users,
vhosts and permissions, and who may log in from where (loopback users).

``load_config`` and ``cli.main`` are called in-process with an explicit
environment, so nothing here depends on the caller's ``AMQP_SERVER_*`` variables.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from amqp_server.core.access import AccessControl, Permission, check_password, hash_password
from amqp_server.ops import cli
from amqp_server.ops.access import apply_config, load_access, startup_access
from amqp_server.ops.config import Config, PermissionDefinition, UserDefinition, load_config, memory_limit
from amqp_server.ops.errors import ConfigError
from amqp_server.server.tls import server_context

NO_ENV: dict[str, str] = {}


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "amqp-server.toml"
    path.write_text(text)
    return path


def config_error(**kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(**kwargs)  # type: ignore[arg-type]
    return caught.value


# ------------------------------------------------------------------ precedence


def test_defaults_when_nothing_is_set() -> None:
    config = load_config(environ=NO_ENV)
    assert (config.host, config.port, config.log_level, config.log_format) == ("127.0.0.1", 5672, "info", "text")
    assert config.loopback_users == ("guest",)
    assert config.tls_cert is None and config.users == ()


def test_file_overrides_defaults(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'port = 5700\nlog_level = "debug"\nheartbeat = 30\n')
    config = load_config(config_file=path, environ=NO_ENV)
    assert (config.port, config.log_level, config.heartbeat, config.config_file) == (5700, "debug", 30, path)


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'port = 5700\nhost = "0.0.0.0"\n')
    config = load_config(config_file=path, environ={"AMQP_SERVER_PORT": "5701"})
    assert (config.port, config.host) == (5701, "0.0.0.0")


def test_flag_overrides_environment_and_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "port = 5700\n")
    config = load_config({"port": "5702"}, path, environ={"AMQP_SERVER_PORT": "5701"})
    assert config.port == 5702


def test_config_file_can_be_named_by_environment(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "channel_max = 16\n")
    assert load_config(environ={"AMQP_SERVER_CONFIG": str(path)}).channel_max == 16


def test_every_level_through_the_command_line(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'host = "0.0.0.0"\nport = 5700\nheartbeat = 5\n')
    config = cli.parse_args(
        ["--config", str(path), "--port", "5702"], environ={"AMQP_SERVER_HEARTBEAT": "7", "AMQP_SERVER_PORT": "5701"}
    )
    assert (config.host, config.port, config.heartbeat) == ("0.0.0.0", 5702, 7)


def test_the_original_flags_keep_working(tmp_path: Path) -> None:
    config = cli.parse_args(
        ["--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path), "--log-level", "warning"], environ=NO_ENV
    )
    assert (config.host, config.port, config.data_dir, config.log_level) == ("127.0.0.1", 0, tmp_path, "warning")


def test_relative_paths_in_the_file_are_relative_to_it(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'data_dir = "data"\n')
    assert load_config(config_file=path, environ=NO_ENV).data_dir == tmp_path / "data"


def test_lists_and_booleans_from_text(tmp_path: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    config = load_config(
        {"tls_cert": str(tmp_path / "cert.pem"), "tls_key": str(tmp_path / "key.pem"), "tls_verify_peer": True},
        environ={"AMQP_SERVER_LOOPBACK_USERS": "guest, admin", "AMQP_SERVER_TLS_CA": str(tmp_path / "ca.pem")},
    )
    assert config.loopback_users == ("guest", "admin")
    assert config.tls_verify_peer is True and config.tls_ca == tmp_path / "ca.pem"
    assert load_config(environ={"AMQP_SERVER_LOOPBACK_USERS": ""}).loopback_users == ()
    assert load_config(environ={"AMQP_SERVER_TLS_VERIFY_PEER": "no"}).tls_verify_peer is False


def test_memory_high_watermark_is_a_fraction_or_bytes() -> None:
    assert load_config({"memory_high_watermark": "0.5"}, environ=NO_ENV).memory_high_watermark == memory_limit(0.5)
    assert load_config({"memory_high_watermark": "1000000"}, environ=NO_ENV).memory_high_watermark == 1_000_000


# ------------------------------------------------------------------ validation


def test_port_out_of_range_names_the_key_and_flag() -> None:
    error = config_error(flags={"port": "70000"}, environ=NO_ENV)
    assert str(error) == "--port must be between 0 and 65535, got 70000"


def test_port_that_is_not_a_number_names_the_environment_variable() -> None:
    error = config_error(environ={"AMQP_SERVER_PORT": "http"})
    assert str(error) == "port: must be an integer, got 'http' (from AMQP_SERVER_PORT)"


def test_unknown_key_in_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "prot = 5672\n")
    assert (
        str(config_error(config_file=path, environ=NO_ENV)) == f"prot: unknown key (did you mean 'port'?) (from {path})"
    )


def test_wrong_type_in_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'port = "5672"\n')
    assert (
        str(config_error(config_file=path, environ=NO_ENV))
        == f"port: must be an integer, got string '5672' (from {path})"
    )


def test_boolean_is_not_an_integer_in_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "heartbeat = true\n")
    assert config_error(config_file=path, environ=NO_ENV).key == "heartbeat"


def test_missing_certificate_file(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text("x")
    error = config_error(
        flags={"tls_cert": str(tmp_path / "cert.pem"), "tls_key": str(tmp_path / "key.pem")}, environ=NO_ENV
    )
    assert str(error) == f"--tls-cert must be an existing file, got {tmp_path / 'cert.pem'}"


def test_certificate_without_key(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    error = config_error(environ={"AMQP_SERVER_TLS_CERT": str(tmp_path / "cert.pem")})
    assert str(error) == "tls_key: required when tls_cert is set (from AMQP_SERVER_TLS_CERT)"


def test_verify_peer_without_ca() -> None:
    assert config_error(flags={"tls_verify_peer": True}, environ=NO_ENV).key == "tls_ca"


def test_bad_log_format() -> None:
    error = config_error(environ={"AMQP_SERVER_LOG_FORMAT": "xml"})
    assert str(error) == "log_format: must be one of text, json, got 'xml' (from AMQP_SERVER_LOG_FORMAT)"


def test_bad_log_level_in_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'log_level = "verbose"\n')
    assert config_error(config_file=path, environ=NO_ENV).key == "log_level"


def test_frame_max_below_the_protocol_minimum() -> None:
    assert (
        str(config_error(flags={"frame_max": "1024"}, environ=NO_ENV))
        == "--frame-max must be between 4096 and 4294967295, got 1024"
    )


def test_missing_config_file(tmp_path: Path) -> None:
    error = config_error(config_file=tmp_path / "nope.toml", environ=NO_ENV)
    assert str(error) == f"--config file not found: {tmp_path / 'nope.toml'}"


def test_file_that_is_not_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "port = \n")
    error = config_error(config_file=path, environ=NO_ENV)
    assert error.key == "config" and "is not valid TOML" in error.problem


def test_main_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert err == "amqp-server: invalid configuration: --port must be between 0 and 65535, got 70000\n"


def test_main_reports_an_invalid_file_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_toml(tmp_path, '[[users]]\nname = "app"\n')
    assert cli.main(["--config", str(path)]) == 2
    assert capsys.readouterr().err == (
        "amqp-server: invalid configuration: users[0].password: set exactly one of "
        f"password and password_hash (from {path})\n"
    )


# ------------------------------------------------------------------ [[users]], [[vhosts]], [[permissions]]

USERS_TOML = """
[[users]]
name = "app"
password = "s3cret"
tags = ["management"]

[[users]]
name = "ops"
password_hash = "{hash}"
tags = "administrator,monitoring"

[[vhosts]]
name = "prod"

[[permissions]]
user = "app"
vhost = "prod"
configure = "^app-.*"
write = ".*"
read = ""
"""


def users_config(tmp_path: Path) -> Config:
    path = write_toml(tmp_path, USERS_TOML.format(hash=hash_password("ops-pw")))
    return load_config({"data_dir": str(tmp_path / "data")}, path, environ=NO_ENV)


def test_users_vhosts_and_permissions_are_read_from_the_file(tmp_path: Path) -> None:
    config = users_config(tmp_path)
    assert [(user.name, user.password, user.tags) for user in config.users] == [
        ("app", "s3cret", ("management",)),
        ("ops", None, ("administrator", "monitoring")),
    ]
    assert config.vhosts == ("prod",)
    assert config.permissions == (PermissionDefinition("app", "prod", "^app-.*", ".*", ""),)


def test_file_users_can_log_in_after_start(tmp_path: Path) -> None:
    access, vhosts = startup_access(users_config(tmp_path))
    assert vhosts == ["/", "prod"]
    assert access.authenticate("app", "s3cret", "127.0.0.1") is not None
    assert access.authenticate("ops", "ops-pw", "127.0.0.1") is not None
    assert access.authenticate("guest", "guest", "127.0.0.1") is not None  # the default user stays
    assert access.may_open("app", "prod") and not access.may_open("app", "/")
    assert access.permissions[("app", "prod")] == Permission("^app-.*", ".*", "")


def test_file_users_are_saved_to_the_data_dir(tmp_path: Path) -> None:
    config = users_config(tmp_path)
    startup_access(config)
    access, vhosts = load_access(config.data_dir)
    assert set(access.users) == {"guest", "app", "ops"} and "prod" in vhosts


def test_restart_with_the_same_file_keeps_the_stored_hash(tmp_path: Path) -> None:
    config = users_config(tmp_path)
    first, _ = startup_access(config)
    second, vhosts = startup_access(config)
    assert second.users["app"].password_hash == first.users["app"].password_hash
    assert not apply_config(second, vhosts, config)


def test_file_password_replaces_a_changed_one(tmp_path: Path) -> None:
    access = AccessControl()
    access.add_user("app", "old", ["management"])
    config = Config(users=(UserDefinition("app", password="new", tags=("management",)),))
    assert apply_config(access, ["/"], config)
    assert check_password("new", access.users["app"].password_hash)


def test_check_password_refuses_what_is_not_a_hash_of_it() -> None:
    """check_password and the config file share one hash rule; a login still fails, never raises, on any
    stored string that is not the password's hash (definitions import keeps such strings, "" included)."""
    good = hash_password("pw")
    assert check_password("pw", good)
    for stored in ("", "not-a-hash", good[:-4], good + "\n", " " + good, "é" + good, hash_password("other")):
        assert not check_password("pw", stored)


def test_permission_for_an_unknown_vhost_is_a_config_error(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path, '[[permissions]]\nuser = "guest"\nvhost = "nope"\nconfigure = ".*"\nwrite = ".*"\nread = ".*"\n'
    )
    config = load_config({"data_dir": str(tmp_path / "data")}, path, environ=NO_ENV)
    with pytest.raises(ConfigError) as caught:
        startup_access(config)
    assert str(caught.value) == f"permissions[0].vhost: no vhost 'nope' (declare it in [[vhosts]]) (from {path})"


@pytest.mark.parametrize(
    "table, key, problem",
    [
        ('[[users]]\nname = "a"\npassword = "p"\ncolour = "red"\n', "users[0].colour", "unknown key"),
        ('[[users]]\npassword = "p"\n', "users[0].name", "missing"),
        ('[[users]]\nname = "a"\npassword = 5\n', "users[0].password", "must be a string, got integer 5"),
        (
            '[[users]]\nname = "a"\npassword_hash = "not-a-hash"\n',
            "users[0].password_hash",
            "not a rabbit_password_hashing_sha256 hash (base64 of a 4-byte salt and a SHA-256 digest)",
        ),
        (
            '[[users]]\nname = "a"\npassword = "p"\ntags = [1]\n',
            "users[0].tags",
            "must be a list of strings, got array [1]",
        ),
        (
            '[[users]]\nname = "a"\npassword = "p"\n[[users]]\nname = "a"\npassword = "q"\n',
            "users",
            "user 'a' is declared twice",
        ),
        ('[[vhosts]]\nname = ""\n', "vhosts[0].name", "must not be empty"),
        ('users = "a"\n', "users", "must be an array of tables ([[users]]), got string"),
        (
            '[[permissions]]\nuser = "a"\nvhost = "/"\nconfigure = ".*"\nwrite = ".*"\n',
            "permissions[0].read",
            "missing",
        ),
        (
            '[[permissions]]\nuser = "a"\nvhost = "/"\nconfigure = "("\nwrite = ".*"\nread = ".*"\n',
            "permissions[0].configure",
            "invalid regular expression '(': missing ), unterminated subpattern at position 0",
        ),
    ],
)
def test_invalid_tables_name_the_entry_and_key(tmp_path: Path, table: str, key: str, problem: str) -> None:
    path = write_toml(tmp_path, table)
    error = config_error(config_file=path, environ=NO_ENV)
    assert (error.key, error.problem, error.source) == (key, problem, str(path))


# ------------------------------------------------------------------ loopback users


def test_guest_may_not_log_in_from_another_host() -> None:
    access = AccessControl.default()
    assert access.authenticate("guest", "guest", "10.0.0.1") is None
    assert access.authenticate("guest", "guest", "127.0.0.1") is not None
    assert access.authenticate("guest", "guest", "::1") is not None


def test_other_users_may_log_in_from_anywhere() -> None:
    access = AccessControl.default()
    access.add_user("app", "pw")
    assert access.authenticate("app", "pw", "10.0.0.1") is not None


def test_empty_loopback_users_lets_guest_in_from_anywhere(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "loopback_users = []\n")
    config = load_config({"data_dir": str(tmp_path / "data")}, path, environ=NO_ENV)
    access, _ = startup_access(config)
    assert config.loopback_users == ()
    assert access.authenticate("guest", "guest", "10.0.0.1") is not None


def test_configured_loopback_users_apply_to_stored_users(tmp_path: Path) -> None:
    config = load_config({"data_dir": str(tmp_path / "data"), "loopback_users": "app"}, environ=NO_ENV)
    access, _ = startup_access(config)
    access.add_user("app", "pw")
    assert access.authenticate("app", "pw", "10.0.0.1") is None
    assert access.authenticate("guest", "guest", "10.0.0.1") is not None


def test_a_config_built_directly_gets_the_same_tls_rule(tmp_path: Path) -> None:
    """Embedding builds ``Config`` without ``load_config``: the TLS listener checks it with the same rule."""
    with pytest.raises(ConfigError) as caught:
        server_context(Config(data_dir=tmp_path, tls_cert=tmp_path / "cert.pem"))
    assert str(caught.value) == "tls_key: required when tls_cert is set"
    with pytest.raises(ConfigError) as caught:
        server_context(Config(data_dir=tmp_path, tls_verify_peer=True))
    assert str(caught.value) == "tls_ca: required when tls_verify_peer is set"
    assert server_context(Config(data_dir=tmp_path)) is None
