"""Pure. One decision, and one answer, for every Pod that is the same Pod.

The replicas of a ReplicaSet, the Pods of a Job, arrive at admission byte for byte equal: they
get their names and uids only after the webhooks have run. They come in bursts (a rollout, a
scale-up), which is when the webhook is busiest, and recognising one costs a few microseconds
where deciding costs tens (benchmarks/README.md).

Reuse is exact, never approximate:

- The key is the namespace and the Pod as JSON: orjson's bytes for the decoded object, so two
  Pods with the same key are the same value to `decide`. A memo serves one MutationConfig.
- `decide` reads the identity sources through a recorder. A kept decision carries each lookup
  and its answer, and is reused only while every lookup still gives the same answer (the same
  entry object, the same flag): a changed ServiceAccount, ConfigMap entry or container
  credentials identity applies from the next Pod on.
- A decision that drew a random number (the token expiration that container credentials
  spread per Pod on purpose), or that found no ServiceAccount, is never kept.
- Kept decisions are shared: nothing may modify one (Decision is frozen; its patch operations
  are read, encoded and copied, never changed). So is the answer built from a kept decision
  when no extension adds to it (`answer`), its patch encoded once.

The memory is bounded by a number of Pods and by the bytes of their keys; the least recently
used goes first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import orjson

from webhook.admission import verdicts
from webhook.admission.entries import ConfigMapEntry, ServiceAccountEntry
from webhook.admission.mutation import Decision, Jitter, Sources, decide, random_jitter
from webhook.admission.reviews import Answer
from webhook.admission.wire import Pod
from webhook.config import MutationConfig

__all__ = ["MEMO_BYTES", "MEMO_PODS", "DecisionMemo"]

MEMO_PODS = 512
"""Distinct Pods remembered: the Deployments and Jobs that roll out at the same time."""
MEMO_BYTES = 4 * 1024 * 1024
"""Bytes of Pod JSON remembered in all; one Pod larger than a sixteenth of it is not kept."""

_Lookup = tuple[str, tuple[str, ...], object]
"""A `Sources` method's name, its arguments and what it answered."""


class _Recorder:
    """The identity sources, noting every lookup and its answer."""

    __slots__ = ("_sources", "lookups")

    def __init__(self, sources: Sources) -> None:
        self._sources = sources
        self.lookups: list[_Lookup] = []

    def service_account(self, namespace: str, name: str) -> ServiceAccountEntry | None:
        found = self._sources.service_account(namespace, name)
        self.lookups.append(("service_account", (namespace, name), found))
        return found

    def config_map_entry(self, key: str) -> ConfigMapEntry | None:
        found = self._sources.config_map_entry(key)
        self.lookups.append(("config_map_entry", (key,), found))
        return found

    def container_credentials(self, namespace: str, name: str) -> bool:
        found = self._sources.container_credentials(namespace, name)
        self.lookups.append(("container_credentials", (namespace, name), found))
        return found


@dataclass(slots=True)
class _Kept:
    decision: Decision
    lookups: tuple[_Lookup, ...]
    answer: Answer | None = None
    """Built at the first admission without extensions that needs it."""

    def holds(self, sources: Sources) -> bool:
        """Every lookup gives the answer it gave (`is`: entries are replaced, never edited)."""
        return all(getattr(sources, method)(*args) is found for method, args, found in self.lookups)


class DecisionMemo:
    """`decide` for one MutationConfig, each distinct Pod decided once while its inputs hold."""

    def __init__(
        self, config: MutationConfig, *, pods: int = MEMO_PODS, size: int = MEMO_BYTES
    ) -> None:
        self.config = config
        self._pods = pods
        self._size = size
        self._largest = size // 16
        self._kept: OrderedDict[tuple[str, bytes], _Kept] = OrderedDict()
        self._by_decision: dict[int, _Kept] = {}
        """The same entries by their decision's id (an entry holds its decision, so the id
        cannot be another object's while it is here)."""
        self._bytes = 0
        self.hits = 0
        """Decisions reused."""
        self.misses = 0
        """Decisions made (kept or not)."""

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def held_bytes(self) -> int:
        """Bytes of Pod JSON held."""
        return self._bytes

    def decide(
        self, pod: Pod, *, namespace: str, sources: Sources, jitter: Jitter = random_jitter
    ) -> Decision:
        """What `mutation.decide` says for `pod` in `namespace` with these sources."""
        try:
            key = (namespace, orjson.dumps(pod))
        except TypeError:  # an integer beyond 64 bits: not a Pod the API server sends
            self.misses += 1
            return decide(
                pod, namespace=namespace, sources=sources, config=self.config, jitter=jitter
            )
        kept = self._kept.get(key)
        if kept is not None and kept.holds(sources):
            self._kept.move_to_end(key)
            self.hits += 1
            return kept.decision
        self.misses += 1
        recorder = _Recorder(sources)
        drawn: list[int] = []

        def drawing(low: int, high: int) -> int:
            drawn.append(value := jitter(low, high))
            return value

        decision = decide(
            pod, namespace=namespace, sources=recorder, config=self.config, jitter=drawing
        )
        self._forget(key)
        if not drawn and decision.reason != "service-account-not-found":
            self._keep(key, _Kept(decision, tuple(recorder.lookups)))
        return decision

    def answer(self, decision: Decision) -> Answer:
        """`verdicts.answer(decision)`: the answer without extensions, built once for a kept
        decision."""
        kept = self._by_decision.get(id(decision))
        if kept is None or kept.decision is not decision:
            return verdicts.answer(decision)
        if kept.answer is None:
            kept.answer = verdicts.answer(decision)
        return kept.answer

    def clear(self) -> None:
        self._kept.clear()
        self._by_decision.clear()
        self._bytes = 0

    def _keep(self, key: tuple[str, bytes], kept: _Kept) -> None:
        size = len(key[1])
        if size > self._largest:
            return
        self._kept[key] = kept
        self._by_decision[id(kept.decision)] = kept
        self._bytes += size
        while len(self._kept) > self._pods or self._bytes > self._size:
            (_, oldest), gone = self._kept.popitem(last=False)
            del self._by_decision[id(gone.decision)]
            self._bytes -= len(oldest)

    def _forget(self, key: tuple[str, bytes]) -> None:
        gone = self._kept.pop(key, None)
        if gone is not None:
            del self._by_decision[id(gone.decision)]
            self._bytes -= len(key[1])
