"""Validation of a policy or operator policy, with RabbitMQ 3.10's rules and messages.

One place for the rules the HTTP API, the admin CLI and definitions import share:
``parse_policy`` turns a JSON body (``pattern``, ``definition``, ``priority``,
``apply-to``) into a ``Policy`` or raises ``PolicyError`` with the reason text
RabbitMQ's management API answers with (``Validation failed\\n\\n…\\n``).  Each
definition key is checked by the RabbitMQ module that owns it, in that module
order (queue-master-locator, then ``rabbit_policies``, then mirroring), stopping
at a module's first bad key, keys sorted; keys no module knows are reported
together.  The four top-level checks all run and their errors are joined, last
first, as ``rabbit_parameter_validation:proplist`` collects them.  Values are
quoted the way Erlang's ``~p`` prints them (``<<"x">>``, ``1.0e20``, ``null``),
since the texts are RabbitMQ's.

Checked against RabbitMQ 3.10.8: ``tests/data/rabbitmq_policy_answers.json``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from .policies import APPLY_TO, Policy, compile_pattern

Check = Callable[[str, Any], str | None]  # (key, value) → the problem, or None


class PolicyError(ValueError):
    """An invalid policy: ``reason`` is RabbitMQ's text for it (the HTTP 400 body's ``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ------------------------------------------------------------------ Erlang's ~p


def erlang_term(value: Any) -> str:
    """``value`` (decoded JSON) as Erlang's ``~p`` prints the term RabbitMQ decodes it to."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _erlang_float(value)
    if isinstance(value, str):
        return '<<"' + value.replace("\\", "\\\\").replace('"', '\\"') + '">>'
    if isinstance(value, list):
        return "[" + ",".join(erlang_term(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "#{" + ",".join(f"{erlang_term(k)} => {erlang_term(v)}" for k, v in sorted(value.items())) + "}"
    return repr(value)


def _erlang_float(value: float) -> str:
    """Shortest round-trip digits, as Erlang prints them: ``1.5``, ``1.0e20``, ``1.0e-5``."""
    if not math.isfinite(value):
        return repr(value)
    text = repr(value)
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ------------------------------------------------------------------ definition keys


def _integer(least: int, what: str) -> Check:
    def check(key: str, value: Any) -> str | None:
        return None if _is_integer(value) and value >= least else f"{erlang_term(value)} is not a valid {what}"

    return check


def _string(what: str) -> Check:
    def check(key: str, value: Any) -> str | None:
        return None if isinstance(value, str) else f"{erlang_term(value)} is not a valid {what}"

    return check


def _one_of(choices: tuple[Any, ...], message: str) -> Check:
    def check(key: str, value: Any) -> str | None:
        return None if value in choices and type(value) is type(choices[0]) else message % erlang_term(value)

    return check


def _max_age(key: str, value: Any) -> str | None:
    if isinstance(value, str) and re.fullmatch(r"[0-9]+[YMDhms]", value):
        return None
    return f"{erlang_term(value)} is not a valid max age"


# rabbit_policies: each key's check (the keys operator policies accept are OPERATOR_KEYS)
POLICY_CHECKS: dict[str, Check] = {
    "alternate-exchange": _string("alternate exchange name"),
    "consumer-timeout": _integer(0, "consumer timeout"),  # RabbitMQ 3.12
    "dead-letter-exchange": _string("dead letter exchange name"),
    "dead-letter-routing-key": _string("dead letter routing key"),
    "dead-letter-strategy": _one_of(("at-most-once", "at-least-once"), "%s is not a valid dead letter strategy"),
    "delivery-limit": _integer(0, "delivery limit"),
    "expires": _integer(1, "queue expiry"),
    "initial-cluster-size": _integer(0, "cluster size"),
    "max-age": _max_age,
    "max-in-memory-bytes": _integer(0, "maximum memory in bytes"),
    "max-in-memory-length": _integer(0, "maximum memory in bytes"),  # sic: RabbitMQ's text
    "max-length": _integer(0, "maximum length"),
    "max-length-bytes": _integer(0, "maximum length in bytes"),
    "message-ttl": _integer(0, "message TTL"),
    "overflow": _one_of(("drop-head", "reject-publish", "reject-publish-dlx"), "%s is not a valid overflow value"),
    "queue-leader-locator": _one_of(
        ("client-local", "balanced", "random", "least-leaders"), "%s is not a valid queue leader locator value"
    ),
    "queue-mode": _one_of(("default", "lazy"), "%s is not a valid queue-mode value"),
    "queue-version": _one_of((1, 2), "%s is not a valid queue-version value"),
    "stream-max-segment-size-bytes": _integer(0, "segment size"),
}
OPERATOR_KEYS = (
    "delivery-limit",
    "expires",
    "max-in-memory-bytes",
    "max-in-memory-length",
    "max-length",
    "max-length-bytes",
    "message-ttl",
)
LOCATOR_CHECKS: dict[str, Check] = {
    "queue-master-locator": _one_of(("min-masters", "client-local", "random"), "%s invalid queue-master-locator value"),
}
HA_KEYS = (
    "ha-mode",
    "ha-params",
    "ha-sync-mode",
    "ha-sync-batch-size",
    "ha-promote-on-shutdown",
    "ha-promote-on-failure",
)


def _check_keys(checks: Mapping[str, Check], terms: Mapping[str, Any]) -> str | None:
    for key in sorted(terms):
        problem = checks[key](key, terms[key])
        if problem is not None:
            return problem
    return None


def _check_mirroring(terms: Mapping[str, Any]) -> str | None:
    """rabbit_mirror_queue_misc's rules: accepted and stored (this broker has no mirrors to apply them to)."""
    mode, params = terms.get("ha-mode"), terms.get("ha-params")
    if "ha-mode" not in terms:
        return "ha-mode must be specified to specify ha-params, ha-sync-mode or ha-promote-on-shutdown"
    given = "none" if "ha-params" not in terms else erlang_term(params)
    if mode == "all":
        if "ha-params" in terms:
            return 'ha-mode="all" does not take parameters'
    elif mode == "exactly":
        if not (isinstance(params, int) and not isinstance(params, bool) and params > 0):
            return f'ha-mode="exactly" takes an integer, {given} given'
    elif mode == "nodes":
        if not (isinstance(params, list) and params and all(isinstance(node, str) for node in params)):
            return f'ha-mode="nodes" takes a list, {given} given'
    else:
        return f"{erlang_term(mode)} is not a valid ha-mode value"
    sync_mode = terms.get("ha-sync-mode", "manual")
    if sync_mode not in ("manual", "automatic"):
        return f'ha-sync-mode must be "manual" or "automatic", got {erlang_term(sync_mode)}'
    batch = terms.get("ha-sync-batch-size", 1)
    if not (_is_integer(batch) and batch > 0):
        return f"ha-sync-batch-size takes an integer greater than 0, {erlang_term(batch)} given"
    for key in ("ha-promote-on-shutdown", "ha-promote-on-failure"):
        value = terms.get(key, "always")
        if value not in ("always", "when-synced"):
            return f'{key} must be "always" or "when-synced", got {erlang_term(value)}'
    return None


def definition_problem(definition: Any, operator: bool) -> str | None:
    """Why ``definition`` is not a valid (operator) policy definition, or None."""
    if isinstance(definition, Mapping) and not definition:
        return "no policy provided"
    if not isinstance(definition, Mapping):
        return f"definition must be a dictionary: {erlang_term(definition)}"
    if operator:
        modules = [{key: POLICY_CHECKS[key] for key in OPERATOR_KEYS}]
        mirroring = False
    else:
        modules = [LOCATOR_CHECKS, POLICY_CHECKS]
        mirroring = True
    left = dict(definition)
    for checks in modules:
        scope = {key: value for key, value in left.items() if key in checks}
        problem = _check_keys(checks, scope)
        if problem is not None:
            return problem
        for key in scope:
            del left[key]
    if mirroring:
        scope = {key: value for key, value in left.items() if key in HA_KEYS}
        if scope:
            problem = _check_mirroring(scope)
            if problem is not None:
                return problem
        for key in scope:
            del left[key]
    if left:
        unknown = ",".join(f"{{{erlang_term(key)},{erlang_term(left[key])}}}" for key in sorted(left))
        return f"[{unknown}] are not recognised policy settings"
    return None


# ------------------------------------------------------------------ the whole policy


def pattern_problem(pattern: Any) -> str | None:
    """Why ``pattern`` is not a valid policy pattern (RabbitMQ's PCRE error texts for the common mistakes)."""
    if not isinstance(pattern, str):
        return f"pattern should be a binary but was {erlang_term(pattern)}"
    try:
        compile_pattern(pattern)
    except re.error as error:
        message, offset = _pcre_error(pattern, error)
        term = f'{{"{message}",{offset}}}'
        prefix = "pattern should be regular expression but is invalid: "
        if len(prefix) + len(term) >= 80:  # ~p breaks a tuple that does not fit its line, aligned after its brace
            term = f'{{"{message}",\n{" " * (len(prefix) + 1)}{offset}}}'
        return prefix + term
    return None


def _pcre_error(pattern: str, error: re.error) -> tuple[str, int]:
    """PCRE's message and offset for Python's ``re.error`` (the usual ones; Python's own text otherwise)."""
    text, position = error.msg, error.pos or 0
    if text.startswith("missing ), unterminated subpattern"):
        return "missing )", len(pattern)
    if text.startswith("unbalanced parenthesis"):
        return "unmatched parentheses", position
    if text.startswith("unterminated character set"):
        return "missing terminating ] for character class", len(pattern)
    if text in ("nothing to repeat", "multiple repeat"):
        return "nothing to repeat", position
    if text.startswith("min repeat greater than max repeat"):
        brace = pattern.find("}", position)
        return "numbers out of order in {} quantifier", brace if brace >= 0 else position
    return text, position


def _apply_to_problem(apply_to: Any) -> str | None:
    if apply_to in APPLY_TO:
        return None
    shown = apply_to if isinstance(apply_to, str) else erlang_term(apply_to)
    # RabbitMQ 3.12's text: 3.10 knew only queues, exchanges and all (see the README's policy notes)
    return (
        f"apply-to '{shown}' unrecognised; should be one of: 'queues', 'classic_queues',  'quorum_queues', "
        "'streams', 'exchanges', or 'all'"
    )


def parse_policy(vhost: str, name: str, body: Any, operator: bool = False) -> Policy:
    """The policy a JSON body (as PUT to ``/api/policies/{vhost}/{name}``) describes; ``PolicyError`` if invalid.

    ``priority`` defaults to 0 and ``apply-to`` to ``all``; other fields of the body are ignored (as there).
    """
    if not isinstance(body, Mapping):
        raise PolicyError("[{key_missing,pattern},{key_missing,definition}]")
    missing = [f"{{key_missing,{key}}}" for key in ("pattern", "definition") if key not in body]
    if missing:
        raise PolicyError(f"[{','.join(missing)}]")
    priority = body.get("priority", 0)
    apply_to = body.get("apply-to", "all")
    problems = [
        definition_problem(body["definition"], operator),
        _apply_to_problem(apply_to),
        pattern_problem(body["pattern"]),
        None
        if _is_integer(priority) or (isinstance(priority, float) and math.isfinite(priority))
        else f"priority should be a number, actually was {erlang_term(priority)}",  # (JSON has no NaN)
    ]
    found = [problem for problem in problems if problem is not None]
    if found:
        raise PolicyError("Validation failed\n\n" + "\n".join(found) + "\n")
    return Policy(vhost, name, body["pattern"], dict(body["definition"]), priority, apply_to, operator)
