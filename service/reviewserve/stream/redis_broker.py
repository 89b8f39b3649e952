"""Redis Streams (7.0+) implementation of :class:`~reviewserve.stream.broker.Broker`.

Exactly one result per message: ``complete`` runs one Lua script per batch (atomic on the server)
that, for each message still pending in the group, writes the result (or dead letter) and then
acknowledges it; a message no longer pending (acknowledged by another consumer) gets nothing.
A crash before the script leaves the message pending (another consumer claims it later); a
crash after it leaves both the acknowledgement and the result. When a slow consumer and the
consumer that claimed its message both score it, only the first to complete writes a result.
Redis Cluster is refused at start (:meth:`RedisBroker.check_server`): the client does not follow
MOVED redirections and the script touches three keys. Appending a chunk is one script too, recorded
under a chunk token, so a chunk retried after a lost reply is not appended twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from reviewserve.stream.broker import Completed, DeadLetter, GroupInfo, Message, Result

MIN_REDIS_VERSION = (7, 0)
CHUNK_TOKEN_TTL_SECONDS = 3600  # how long a retried chunk is recognised (retries take seconds)


class UnsupportedServer(RuntimeError):
    """The Redis server cannot run the pipeline (Redis Cluster, or older than 7.0); the message says why."""


# KEYS: input stream, results stream, dead-letter stream.
# ARGV: group, write_results (1/0), results MAXLEN, dead-letter MAXLEN (0: unbounded), then counted sections:
#   n_results, (id, label, probability, positive_probability, model_version) * n_results,
#   n_dead, (id, reason) * n_dead, n_ack, id * n_ack.
COMPLETE_SCRIPT = """
local group = ARGV[1]
local write_results = ARGV[2] == '1'
-- Retention: XADD ... MAXLEN ~ n (approximate: whole macro nodes, cheap) when n > 0.
local function append(key, maxlen, ...)
  if tonumber(maxlen) > 0 then
    return redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', ...)
  end
  return redis.call('XADD', key, '*', ...)
end
-- Still pending in the group? (Acknowledged by another consumer meanwhile: write nothing.)
-- Checked before the write, and XACK after it: if the write fails (e.g. Redis out of memory),
-- the script stops with this message still pending and earlier ones complete: never acked
-- without its result.
local function pending(id)
  return #redis.call('XPENDING', KEYS[1], group, id, id, 1) == 1
end
local i = 5
local results, dead, acked, duplicates = 0, 0, 0, 0
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local id = ARGV[i]
  if pending(id) then
    if write_results then
      append(KEYS[2], ARGV[3], 'source_id', id, 'label', ARGV[i + 1], 'probability', ARGV[i + 2],
             'positive_probability', ARGV[i + 3], 'model_version', ARGV[i + 4])
      results = results + 1
    else
      acked = acked + 1
    end
    redis.call('XACK', KEYS[1], group, id)
  else
    duplicates = duplicates + 1
  end
  i = i + 5
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local id = ARGV[i]
  if pending(id) then
    append(KEYS[3], ARGV[4], 'source_id', id, 'reason', ARGV[i + 1], 'group', group)
    redis.call('XACK', KEYS[1], group, id)
    dead = dead + 1
  else
    duplicates = duplicates + 1
  end
  i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  if redis.call('XACK', KEYS[1], group, ARGV[i]) == 1 then
    acked = acked + 1
  else
    duplicates = duplicates + 1
  end
  i = i + 1
end
return {results, dead, acked, duplicates}
"""

# KEYS: dead-letter stream. ARGV: MAXLEN (0: unbounded), group, then (id, reason) pairs. For entries
# that are no longer pending (XAUTOCLAIM removed them from the PEL because they were deleted).
DEAD_LETTER_SCRIPT = """
for i = 3, #ARGV, 2 do
  local fields = {'source_id', ARGV[i], 'reason', ARGV[i + 1], 'group', ARGV[2]}
  if tonumber(ARGV[1]) > 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
  else
    redis.call('XADD', KEYS[1], '*', unpack(fields))
  end
end
return (#ARGV - 2) / 2
"""

# KEYS: input stream, chunk token key. ARGV: token TTL seconds, then per entry: n_fields, field, value, ...
# Idempotent append: a chunk whose token is recorded was appended already (its reply was lost and the
# client retried): return the recorded ids instead of appending it again. One script, so the token is
# recorded iff the chunk was appended (Redis refuses a script for OOM at its first write, not midway).
ADD_SCRIPT = """
local done = redis.call('GET', KEYS[2])
if done then
  return cjson.decode(done)
end
local ids = {}
local i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local fields = {}
  for k = 1, 2 * n do
    fields[k] = ARGV[i + k]
  end
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', unpack(fields))
  i = i + 2 * n + 1
end
redis.call('SET', KEYS[2], cjson.encode(ids), 'EX', ARGV[1])
return ids
"""

# KEYS: input stream. ARGV: group, consumer names. Deletes each consumer only if it has nothing
# pending at that instant (XGROUP DELCONSUMER would drop its pending entries: never lose one).
FORGET_SCRIPT = """
local removed = {}
for i = 2, #ARGV do
  if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[i]) == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[i])
    table.insert(removed, ARGV[i])
  end
end
return removed
"""

LAG_FALLBACK_CAP = 100_000  # when Redis cannot compute a group's lag, count at most this many entries


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def stream_id_key(stream_id: str) -> tuple[int, int]:
    """A stream id ``ms-seq`` as a sortable tuple."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class RedisBroker:
    """A :class:`~reviewserve.stream.broker.Broker` over one Redis connection pool."""

    def __init__(
        self,
        url: str,
        block_ms: int = 1000,
        timeout: float = 5.0,
        results_maxlen: int = 0,
        dead_letter_maxlen: int = 0,
    ) -> None:
        """Connect lazily to ``url``; the socket timeout covers the longest blocking read.

        ``results_maxlen``/``dead_letter_maxlen``: retention of the results and dead-letter streams
        (approximate MAXLEN applied on every write; 0 keeps everything).
        """
        self.url = url
        self.results_maxlen = results_maxlen
        self.dead_letter_maxlen = dead_letter_maxlen
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=block_ms / 1000 + timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), 3),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
        self._complete = self.client.register_script(COMPLETE_SCRIPT)
        self._forget = self.client.register_script(FORGET_SCRIPT)
        self._add = self.client.register_script(ADD_SCRIPT)
        self._dead_letter = self.client.register_script(DEAD_LETTER_SCRIPT)
        self._claim_cursor: dict[tuple[str, str], str] = {}
        # Probes (readiness) answer within a kubelet's timeout: short timeouts, no retries.
        self.probe_client = redis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0)
        )

    # ------------------------------------------------------------------ groups ---

    def ping(self) -> bool:
        """True when Redis answers PING."""
        try:
            return bool(self.probe_client.ping())
        except redis.RedisError:
            return False

    def check_server(self) -> None:
        """Refuse what the pipeline cannot run on: Redis Cluster, Redis older than 7.0.

        Raises :class:`UnsupportedServer`; connection errors propagate (the caller waits them out).
        """
        info = self.client.info("server")
        cluster = self.client.info("cluster")
        if int(cluster.get("cluster_enabled", 0)):
            raise UnsupportedServer(
                f"Redis at {self.client.connection_pool.connection_kwargs.get('host')}:"
                f"{self.client.connection_pool.connection_kwargs.get('port')} is a Redis Cluster node "
                "(cluster_enabled:1): not supported. reviewserve stream needs one Redis primary "
                "(with replicas or Sentinel for failover); see docs/streaming.md"
            )
        version = str(info.get("redis_version", "0"))
        parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if parts < MIN_REDIS_VERSION:
            raise UnsupportedServer(f"Redis {version} is too old: reviewserve stream needs Redis 7.0 or later")

    def ensure_group(self, stream: str, group: str) -> int | None:
        """XGROUP CREATE ... 0 MKSTREAM: a new group reads everything still in the stream.

        Returns None when the group existed, else how many entries the stream had lost (trimmed or
        deleted) before the group was created: entries the new group will never see.
        """
        pipe = self.client.pipeline(transaction=True)
        pipe.xgroup_create(stream, group, id="0", mkstream=True)
        pipe.xinfo_stream(stream)
        created, info = pipe.execute(raise_on_error=False)
        if isinstance(created, redis.ResponseError):
            if "BUSYGROUP" not in str(created):
                raise created
            return None
        if isinstance(info, Exception):
            raise info
        return max(0, int(info.get("entries-added", 0)) - int(info["length"]))

    def group_exists(self, stream: str, group: str) -> bool:
        """Whether ``group`` is among XINFO GROUPS of ``stream`` (asked with the probe connection)."""
        try:
            return any(_text(g["name"]) == group for g in self.probe_client.xinfo_groups(stream))
        except redis.ResponseError:
            return False  # no such stream

    def groups(self, stream: str) -> list[GroupInfo]:
        """XINFO GROUPS (Redis 7 reports ``lag``); an absent stream has no groups."""
        try:
            raw = self.client.xinfo_groups(stream)
        except redis.ResponseError as exc:
            if "no such key" in str(exc).lower():
                return []
            raise
        out = []
        for entry in raw:
            last = _text(entry["last-delivered-id"])
            lag = entry.get("lag")
            if lag is None:  # after deletions past the group's position Redis cannot tell: count
                lag = len(self.client.xrange(stream, min=f"({last}", max="+", count=LAG_FALLBACK_CAP))
            out.append(
                GroupInfo(
                    name=_text(entry["name"]),
                    consumers=int(entry["consumers"]),
                    pending=int(entry["pending"]),
                    last_delivered_id=last,
                    lag=int(lag),
                )
            )
        return out

    def forget_idle_consumers(self, stream: str, group: str, min_idle_ms: int, keep: str) -> list[str]:
        """Remove consumers idle for ``min_idle_ms`` with nothing pending (pods long gone); not ``keep``."""
        names = [
            _text(c["name"])
            for c in self.client.xinfo_consumers(stream, group)
            if int(c["pending"]) == 0 and int(c["idle"]) >= min_idle_ms and _text(c["name"]) != keep
        ]
        if not names:
            return []
        return [_text(n) for n in self._forget(keys=[stream], args=[group, *names])]

    # ----------------------------------------------------------------- reading ---

    def read(self, stream: str, group: str, consumer: str, count: int, block_ms: int) -> list[Message]:
        """XREADGROUP GROUP g c COUNT n BLOCK ms STREAMS s >."""
        reply = self.client.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
        return [Message(_text(i), fields) for _, entries in reply or [] for i, fields in entries]

    def read_own_pending(self, stream: str, group: str, consumer: str, count: int) -> list[Message]:
        """XREADGROUP ... STREAMS s 0: this consumer's pending history, with delivery counts."""
        reply = self.client.xreadgroup(group, consumer, {stream: "0"}, count=count)
        entries = [(_text(i), fields or None) for _, found in reply or [] for i, fields in found]
        return self._with_deliveries(stream, group, consumer, entries)

    def claim_stale(self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Message]:
        """XAUTOCLAIM: take over messages idle for ``min_idle_ms`` (e.g. of a dead consumer).

        Successive calls walk the whole pending list with XAUTOCLAIM's cursor (one call inspects
        a bounded part of it), starting over once it wraps.
        Entries deleted from the stream while pending come back with ``fields=None`` and
        ``pending=False``: Redis 7 XAUTOCLAIM lists their ids apart and removes them from the
        pending list, so they cannot be acknowledged, only dead-lettered.
        """
        start = self._claim_cursor.get((stream, group), "0-0")
        reply = self.client.xautoclaim(stream, group, consumer, min_idle_ms, start, count=count)
        self._claim_cursor[(stream, group)] = _text(reply[0])
        entries = [(_text(i), fields or None) for i, fields in reply[1]]
        deleted = [Message(_text(i), None, 1, pending=False) for i in (reply[2] if len(reply) > 2 else [])]
        return self._with_deliveries(stream, group, consumer, entries) + deleted

    def _with_deliveries(self, stream: str, group: str, consumer: str, entries: list[tuple[str, Any]]) -> list[Message]:
        """Attach each message's delivery count (XPENDING of the one id, for this consumer)."""
        if not entries:
            return []
        pipe = self.client.pipeline(transaction=False)
        for message_id, _ in entries:
            pipe.xpending_range(stream, group, message_id, message_id, 1, consumer)
        counts = {}
        for reply in pipe.execute():
            for row in reply:
                counts[_text(row["message_id"])] = int(row["times_delivered"])
        return [Message(i, fields, counts.get(i, 1)) for i, fields in entries]

    def reset_deliveries(self, stream: str, group: str, consumer: str, counts: Mapping[str, int]) -> None:
        """Set the delivery counts of messages this consumer holds (XCLAIM ... RETRYCOUNT n JUSTID).

        For a batch that was scored but could not be written (database down): those deliveries
        say nothing about the message, so a restart that re-reads it must not push it towards
        ``--max-deliveries``. Also resets the idle time: another consumer does not claim it meanwhile.
        """
        if not counts:
            return
        pipe = self.client.pipeline(transaction=False)
        for message_id, n in counts.items():
            pipe.xclaim(stream, group, consumer, 0, [message_id], retrycount=n, justid=True)
        pipe.execute()

    def dead_letter(self, dead_letter_stream: str, group: str, letters: Sequence[DeadLetter]) -> int:
        """Write dead letters for messages no longer pending (nothing to acknowledge); return how many."""
        if not letters:
            return 0
        args: list[str | int] = [self.dead_letter_maxlen, group]
        for letter in letters:
            args += [letter.source_id, letter.reason]
        return int(self._dead_letter(keys=[dead_letter_stream], args=args))

    def lengths(self, streams: Sequence[str]) -> dict[str, int]:
        """XLEN of each stream (0 when absent)."""
        pipe = self.client.pipeline(transaction=False)
        for name in streams:
            pipe.xlen(name)
        return {name: int(n) for name, n in zip(streams, pipe.execute(), strict=True)}

    # -------------------------------------------------------------- completing ---

    def complete(
        self,
        stream: str,
        group: str,
        results_stream: str | None,
        dead_letter_stream: str,
        results: Sequence[Result],
        dead: Sequence[DeadLetter],
        ack_only: Sequence[str] = (),
    ) -> Completed:
        """One atomic script: XACK each message, and write its result / dead letter only if it was acked."""
        if not (results or dead or ack_only):
            return Completed()
        args: list[str | int] = [group, "1" if results_stream else "0", self.results_maxlen, self.dead_letter_maxlen]
        args.append(len(results))
        for r in results:
            args += [r.source_id, r.label, repr(r.probability), repr(r.positive_probability), r.model_version]
        args.append(len(dead))
        for d in dead:
            args += [d.source_id, d.reason]
        args.append(len(ack_only))
        args += list(ack_only)
        keys = [stream, results_stream or stream, dead_letter_stream]
        written, dead_written, acked, duplicates = self._complete(keys=keys, args=args)
        return Completed(int(written), int(dead_written), int(acked), int(duplicates))

    # --------------------------------------------------------------- producing ---

    def add(self, stream: str, entries: Sequence[Mapping[str, str]]) -> list[str]:
        """Append the entries in one round trip, idempotently: a retry after a lost reply appends nothing.

        The client retries a command whose connection dropped; the chunk carries a fresh token
        that the script records with the appended ids, so the retry returns those ids instead.
        """
        if not entries:
            return []
        token = f"{stream}:chunk:{uuid.uuid4().hex}"
        args: list[str | int] = [CHUNK_TOKEN_TTL_SECONDS]
        for fields in entries:
            args.append(len(fields))
            for name, value in fields.items():
                args += [name, value]
        return [_text(i) for i in self._add(keys=[stream, token], args=args)]

    def trim_acknowledged(self, stream: str) -> int:
        """XTRIM MINID to the oldest entry some group still needs; never a blind MAXLEN.

        A group still needs its oldest pending entry (delivered, not acknowledged) and everything
        after its last-delivered-id; so the cut is the minimum over groups of (oldest pending id,
        or last-delivered-id when nothing is pending). Entries before it were read and
        acknowledged by every group. Without groups nothing is trimmed.
        """
        groups = self.groups(stream)
        if not groups:
            return 0
        keep_from = []
        for group in groups:
            if group.pending:
                summary = self.client.xpending(stream, group.name)
                if summary.get("min") is not None:
                    keep_from.append(_text(summary["min"]))
                    continue
            keep_from.append(group.last_delivered_id)
        cut = min(keep_from, key=stream_id_key)
        if stream_id_key(cut) == (0, 0):
            return 0
        return int(self.client.xtrim(stream, minid=cut, approximate=False))

    def close(self) -> None:
        """Close the connection pools."""
        self.client.close()
        self.probe_client.close()
