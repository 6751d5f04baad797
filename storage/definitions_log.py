"""Durable exchanges, queues and bindings: held in memory, each change appended to ``definitions.log``.

Why a log: a durable declare is answered only after its sync, and rewriting the
whole snapshot in every sync made each declare cost O(number of definitions)
(295 declares/s for the first thousand queues, 40/s by the sixth thousand).  An
appended record costs the same with 50,000 queues as with 5 and is fsynced by
the store's group commit together with everything else (LavinMQ does the same).

Files (in the store's data dir)::

    definitions.json   snapshot: the format of ``segment_format.encode_definitions``
                       (CRC-checked JSON, replaced atomically); what older versions wrote
    definitions.log    b"AMQPDLOG\\x00" + u16 version (1 or 2), then records framed like segment
                       records (u32 length, u32 crc32(payload), payload); payload = u8 operation
                       + compact JSON of the record (``*_document``) or of its key

Version 2 added the policy operations (7, 8).  A log is written as version 1
until its first policy record: the header is raised to 2 (and synced) before
that record is appended, so an older broker never meets an operation it does
not know in a file it can read (it would take it for damage and cut the log
there); it sets a version-2 log aside whole instead.

State = the snapshot with the log replayed over it.  A data dir of an older
version has only the snapshot: it opens as is, and its first change starts the
log (that is the whole migration).  A torn or damaged tail of the log is cut
off at the last intact record, as for segments: an append is only acknowledged
after its fsync, so only unacknowledged changes can be in a torn tail.

Compaction, once the log outgrows ``COMPACT_FACTOR`` times the last snapshot
(and ``COMPACT_MIN_BYTES``): pending records are appended and fsynced first, so
the log holds the full history since the last snapshot; then a new snapshot is
written (temporary file, fsync, rename) and the log replaced by an empty one.
A crash between the two leaves the new snapshot with the old log, and replaying
a full history over its own end state gives that state again (each key ends at
its last operation; cascading deletes are replayed before any later put), so
no step needs to be undone.  The cost is amortised: a compaction writes at most
about half as many bytes as were appended since the previous one.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import fileio
from .api import (
    BindingKey,
    BindingRecord,
    ExchangeRecord,
    PolicyKey,
    PolicyRecord,
    QueueRecord,
    binding_key,
    policy_key,
)
from .segment_format import (
    DEFINITIONS_LOG_MAGIC,
    DEFINITIONS_LOG_VERSION,
    FILE_HEADER_SIZE,
    RECORD_HEAD,
    Definitions,
    DefinitionsLogError,
    binding_document,
    binding_from_document,
    check_header,
    decode_definitions,
    encode_definitions,
    exchange_document,
    exchange_from_document,
    policy_document,
    policy_from_document,
    queue_document,
    queue_from_document,
)

log = logging.getLogger("storage.definitions_log")

SNAPSHOT = "definitions.json"
LOG = "definitions.log"
LOG_MAGIC = DEFINITIONS_LOG_MAGIC


def log_header(version: int) -> bytes:
    return LOG_MAGIC + struct.pack("<H", version)


LOG_HEADER = log_header(1)  # what a new log starts with (raised to 2 by its first policy record)
COMPACT_MIN_BYTES = 1024 * 1024  # below this the log is not worth compacting (replaying it takes milliseconds)
COMPACT_FACTOR = 2  # compact when the log is this many times the size of the last snapshot

PUT_EXCHANGE, DELETE_EXCHANGE, PUT_QUEUE, DELETE_QUEUE, PUT_BINDING, DELETE_BINDING = range(1, 7)
PUT_POLICY, DELETE_POLICY = 7, 8  # version 2


def _record(operation: int, document: dict[str, Any]) -> bytes:
    payload = bytes((operation,)) + json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return RECORD_HEAD.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass
class DefinitionsBatch:
    """What one sync writes: the records appended since the last one, and a snapshot if compaction is due."""

    records: bytearray = field(default_factory=bytearray)
    count: int = 0
    snapshot: Definitions | None = None
    version: int = 1  # the log version its records need


class DefinitionsLog:
    """The definitions of one data dir.

    Changes (``put_*``/``delete_*``) and ``take`` are called under the store's
    buffer lock; ``write`` under its sync lock (possibly in another thread).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.exchanges: dict[tuple[str, str], ExchangeRecord] = {}
        self.queues: dict[tuple[str, str], QueueRecord] = {}
        self.bindings: dict[BindingKey, BindingRecord] = {}
        self.policies: dict[PolicyKey, PolicyRecord] = {}
        self._pending = DefinitionsBatch()
        self._fd: int | None = None  # the log, opened at the first write
        self._size = 0  # durable size of the log (0: no header yet)
        self._version = 1  # of the log's header
        self._dir_dirty = False  # the log's directory entry is new: fsync the directory with the next append
        self._snapshot_size = 0

    # -- opening -----------------------------------------------------------------------------

    def open(self) -> None:
        """Load the snapshot, replay the log over it (cutting a torn tail off)."""
        for leftover in (SNAPSHOT, LOG):
            (self.data_dir / (leftover + ".tmp")).unlink(missing_ok=True)  # a replacement never renamed
        self._load_snapshot()
        path = self.data_dir / LOG
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        problem = check_header(data, LOG_MAGIC)
        if problem == "empty":
            return  # written again from offset 0, header first
        if problem is not None:
            aside = path.with_name(LOG + ".corrupt")
            log.error(
                "%s: %s; its changes are not applied (the snapshot is used alone), file kept as %s",
                path,
                problem,
                aside,
            )
            os.replace(path, aside)
            return
        end, count, damage = self._replay(data)
        if damage is not None:
            log.warning(
                "%s: %s at offset %d; applied the %d changes before it and cut the file there (dropping %d bytes)",
                path,
                damage,
                end,
                count,
                len(data) - end,
            )
            os.truncate(path, end)
        self._size = end
        self._version = struct.unpack_from("<H", data, len(LOG_MAGIC))[0]

    def _load_snapshot(self) -> None:
        path = self.data_dir / SNAPSHOT
        try:
            data = path.read_bytes()
            definitions = decode_definitions(data)
        except FileNotFoundError:
            return
        except DefinitionsLogError as error:
            aside = path.with_name(f"{SNAPSHOT}.corrupt")
            log.error(
                "%s is unusable (%s): starting without durable exchanges, queues and bindings; the file is kept as %s",
                path,
                error,
                aside,
            )
            os.replace(path, aside)
            return
        self._snapshot_size = len(data)
        self.exchanges = {(record.vhost, record.name): record for record in definitions.exchanges}
        self.queues = {(record.vhost, record.name): record for record in definitions.queues}
        self.bindings = {binding_key(record): record for record in definitions.bindings}
        self.policies = {policy_key(record): record for record in definitions.policies}

    def _replay(self, data: bytes) -> tuple[int, int, str | None]:
        """Apply the log's records; ``(end of the last intact one, how many, why reading stopped or None)``."""
        offset, count = FILE_HEADER_SIZE, 0
        while offset < len(data):
            if len(data) - offset < RECORD_HEAD.size:
                return offset, count, "partial record header"
            length, crc = RECORD_HEAD.unpack_from(data, offset)
            payload = data[offset + RECORD_HEAD.size : offset + RECORD_HEAD.size + length]
            if len(payload) != length or length == 0:
                return offset, count, f"record of {length} bytes cut short at {len(payload)} bytes"
            if zlib.crc32(payload) != crc:
                return offset, count, "CRC mismatch"
            try:
                self._apply(payload[0], json.loads(payload[1:]))
            except (KeyError, TypeError, ValueError, IndexError) as error:
                return offset, count, f"unparsable record ({error!r})"
            offset += RECORD_HEAD.size + length
            count += 1
        return offset, count, None

    def _apply(self, operation: int, document: dict[str, Any]) -> None:
        if operation == PUT_EXCHANGE:
            self._put_exchange(exchange_from_document(document))
        elif operation == DELETE_EXCHANGE:
            self._delete_exchange(document["vhost"], document["name"])
        elif operation == PUT_QUEUE:
            self._put_queue(queue_from_document(document))
        elif operation == DELETE_QUEUE:
            self._delete_queue(document["vhost"], document["name"])
        elif operation == PUT_BINDING:
            binding = binding_from_document(document)
            self.bindings[binding_key(binding)] = binding
        elif operation == DELETE_BINDING:
            self.bindings.pop(binding_key(binding_from_document(document)), None)
        elif operation == PUT_POLICY:
            policy = policy_from_document(document)
            self.policies[policy_key(policy)] = policy
        elif operation == DELETE_POLICY:
            self.policies.pop((document["vhost"], bool(document["operator"]), document["name"]), None)
        else:
            raise ValueError(f"unknown operation {operation}")

    # -- changes (memory, plus a record for the next sync) -----------------------------------

    def _log(self, operation: int, document: dict[str, Any]) -> None:
        self._pending.records += _record(operation, document)
        self._pending.count += 1
        if operation in (PUT_POLICY, DELETE_POLICY):
            self._pending.version = DEFINITIONS_LOG_VERSION

    def put_exchange(self, record: ExchangeRecord) -> None:
        self._log(PUT_EXCHANGE, exchange_document(record))  # raises TypeError for unstorable arguments
        self._put_exchange(record)

    def delete_exchange(self, vhost: str, name: str) -> None:
        self._log(DELETE_EXCHANGE, {"vhost": vhost, "name": name})
        self._delete_exchange(vhost, name)

    def put_queue(self, record: QueueRecord) -> None:
        self._log(PUT_QUEUE, queue_document(record))
        self._put_queue(record)

    def delete_queue(self, vhost: str, name: str) -> None:
        self._log(DELETE_QUEUE, {"vhost": vhost, "name": name})
        self._delete_queue(vhost, name)

    def put_binding(self, record: BindingRecord) -> None:
        self._log(PUT_BINDING, binding_document(record))
        self.bindings[binding_key(record)] = record

    def delete_binding(self, record: BindingRecord) -> None:
        self._log(DELETE_BINDING, binding_document(record))
        self.bindings.pop(binding_key(record), None)

    def put_policy(self, record: PolicyRecord) -> None:
        self._log(PUT_POLICY, policy_document(record))
        self.policies[policy_key(record)] = record

    def delete_policy(self, vhost: str, name: str, operator: bool) -> None:
        self._log(DELETE_POLICY, {"vhost": vhost, "name": name, "operator": operator})
        self.policies.pop((vhost, operator, name), None)

    def _put_exchange(self, record: ExchangeRecord) -> None:
        self.exchanges[(record.vhost, record.name)] = record

    def _delete_exchange(self, vhost: str, name: str) -> None:
        self.exchanges.pop((vhost, name), None)
        self._forget_bindings(
            lambda b: (
                b.vhost == vhost and (b.source == name or (b.destination == name and b.destination_kind == "exchange"))
            )
        )

    def _put_queue(self, record: QueueRecord) -> None:
        self.queues[(record.vhost, record.name)] = record

    def _delete_queue(self, vhost: str, name: str) -> None:
        self.queues.pop((vhost, name), None)
        self._forget_bindings(lambda b: b.vhost == vhost and b.destination == name and b.destination_kind == "queue")

    def _forget_bindings(self, doomed: Callable[[BindingRecord], bool]) -> None:
        for key in [key for key, binding in self.bindings.items() if doomed(binding)]:
            del self.bindings[key]

    # -- sync --------------------------------------------------------------------------------

    @property
    def unwritten(self) -> int:
        """How many changes are not in the log yet (for the shutdown report)."""
        return self._pending.count

    def take(self) -> DefinitionsBatch | None:
        """The changes since the last sync (None if there are none), with a snapshot if compaction is due."""
        if not self._pending.count:
            return None
        batch, self._pending = self._pending, DefinitionsBatch()
        if self._size + len(batch.records) > max(COMPACT_MIN_BYTES, COMPACT_FACTOR * self._snapshot_size):
            batch.snapshot = Definitions(
                list(self.exchanges.values()),
                list(self.queues.values()),
                list(self.bindings.values()),
                list(self.policies.values()),
            )
        return batch

    def give_back(self, failed: DefinitionsBatch) -> None:
        """Records of a failed sync go back in front of newer ones, to be appended again at the same offset."""
        newer, self._pending = self._pending, failed
        failed.records += newer.records
        failed.count += newer.count
        failed.version = max(failed.version, newer.version)
        failed.snapshot = None  # taken again by the next ``take`` if still due

    def write(self, batch: DefinitionsBatch) -> None:
        """Append and fsync the batch's records (then compact, if a snapshot came with it).

        On failure the records are what must be given back; once they are in
        the log the sync has succeeded, and a failed compaction is only logged
        (a later sync tries again).
        """
        self._append(batch.records, batch.version)
        batch.records, batch.count = bytearray(), 0
        if batch.snapshot is not None:
            try:
                self._compact(batch.snapshot)
            except OSError as error:  # the changes are durable in the log: the sync itself succeeded
                log.warning(
                    "could not compact %s into %s (tried again later): %s", self.data_dir / LOG, SNAPSHOT, error
                )

    def _append(self, records: bytearray, version: int = 1) -> None:
        data = records if self._size else log_header(version) + records
        if self._fd is None:
            self._dir_dirty |= not (self.data_dir / LOG).exists()
            self._fd = os.open(self.data_dir / LOG, os.O_WRONLY | os.O_CREAT, 0o644)
        if self._size and version > self._version:
            # raised (and synced) before the records that need it: see the module docstring
            fileio.pwrite_all(self._fd, log_header(version), 0)
            fileio.datasync(self._fd)
            self._version = version
        elif not self._size:
            self._version = version
        try:
            fileio.pwrite_all(self._fd, data, self._size)
            fileio.datasync(self._fd)
            if self._dir_dirty:  # a new (or just renamed) log is only there after a crash once this is done
                fileio.fsync_dir(self.data_dir)
                self._dir_dirty = False
        except OSError:
            fileio.release_tail(self._fd, self._size)
            raise
        self._size += len(data)

    def _compact(self, snapshot: Definitions) -> None:
        encoded = encode_definitions(snapshot)
        _replace_file(self.data_dir / SNAPSHOT, encoded)
        self._snapshot_size = len(encoded)
        self.close()  # whatever happens next, the next append opens the log by name
        path = self.data_dir / LOG
        os.replace(_write_temporary(path, LOG_HEADER), path)
        self._size = len(LOG_HEADER)
        self._version = 1
        self._dir_dirty = True
        fileio.fsync_dir(self.data_dir)
        self._dir_dirty = False
        log.debug("compacted the definitions log into a %d-byte snapshot", len(encoded))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _write_temporary(path: Path, data: bytes) -> Path:
    """``data`` in a fsynced temporary file beside ``path``, ready to be renamed over it."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            fileio.pwrite_all(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        temporary.unlink(missing_ok=True)  # on a full disk, its space is what the next sync needs
        raise
    return temporary


def _replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file, fsynced, renamed over it, directory fsynced."""
    os.replace(_write_temporary(path, data), path)
    fileio.fsync_dir(path.parent)
