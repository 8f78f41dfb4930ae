"""The leader's registry reaper: copies of instances that left without cleaning up are pruned late.

As ModelMesh's reaper task (ModelMesh.pruneModelRegistry / pruneMissingInstances): it first runs
2 minutes after the instance starts, then every REGISTRY_REAPER_FREQ_MINS. A copy younger than
ASSUME_INSTANCE_GONE_AFTER_MS is never pruned; an instance not in the instance table is noted as
missing the first time the reaper sees it, and its copies go on a later run once it has been missing
for longer than ASSUME_INSTANCE_GONE_AFTER_MS. Instances that came back, or were missing for too
long, leave the missing map after each run. Until then a dead instance's copies stay listed in the
model status, and requests skip them (routing only uses instances in the instance table).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from mmgitops.lab.mesh.registry import CopyRecord

REGISTRY_REAPER_FREQ_MINS = 7
REAPER_FIRST_DELAY_MINS = 2
ASSUME_INSTANCE_GONE_AFTER_MS = 10 * 60_000


@dataclass
class Reaper:
    instance_id: str
    missing: dict[str, int] = field(default_factory=dict)  # instance id -> when first seen missing (epoch ms)

    def prune(self, copies: Mapping[str, Mapping[str, CopyRecord]], alive: Collection[str], now: int
              ) -> list[tuple[str, str]]:
        """One reaper run: the (model id, instance id) copies to delete from the registry."""
        doomed: list[tuple[str, str]] = []
        for model_id, by_instance in copies.items():
            for iid, copy in by_instance.items():
                if now - copy.time < ASSUME_INSTANCE_GONE_AFTER_MS or iid == self.instance_id or iid in alive:
                    continue
                since = self.missing.setdefault(iid, now)
                if now - since > ASSUME_INSTANCE_GONE_AFTER_MS:
                    doomed.append((model_id, iid))
        self.missing = {iid: since for iid, since in self.missing.items()
                        if now - since <= ASSUME_INSTANCE_GONE_AFTER_MS and iid not in alive}
        return doomed
