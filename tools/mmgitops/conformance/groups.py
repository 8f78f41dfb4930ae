"""The suite's groups: one pytest marker each, named after the behaviour it proves."""

from __future__ import annotations

# In the order the report lists them.
GROUPS = {
    "routing": "conformance: requests reach the model they name, through any pod",
    "eviction": "conformance: a full pod evicts its least recently used model",
    "coldload": "conformance: a request to an evicted model loads it within the cold-load budget",
    "packing": "conformance: a single-replica GPU runtime packs every model on its one pod",
    "resilience": "conformance: a pod killed under load loses no request a retrying client sends, and no model",
    "readiness": "conformance: the platform, the controller, the runtime pods and every InferenceService are ready",
    "update": "conformance: an updated InferenceService swaps its model in under load without a failed request",
    "controller": "conformance: the controller names why it cannot place a model, and scales a runtime up from zero",
}
# The order the groups run in. Each group's module starts from an empty target, so two places matter: coldload
# goes on from the pods eviction filled (conformance/overfull.py), right after it; and resilience kills a pod,
# which against pods the suite did not start is a pod every other group uses, so it runs last. The rest keep a
# fixed order so that two runs' timings compare.
RUN_ORDER = ("controller", "eviction", "coldload", "packing", "readiness", "routing", "update", "resilience")
