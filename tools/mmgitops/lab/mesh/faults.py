"""Test-only fault switches: each breaks one ModelMesh behaviour on purpose, so that the conformance
suite can be shown to catch a broken mesh. All are off unless `--fault NAME` is given to `local mesh up`."""

from __future__ import annotations

from dataclasses import dataclass, fields

FAULTS = {
    "wrong-model": "answer every request with another registered model than the one asked for",
    "never-evict": "refuse loads when the cache is full instead of evicting",
    "ignore-capacity": "load past the capacity instead of evicting",
    "evict-mru": "evict the most recently used model instead of the least",
    "no-forward": "answer UNAVAILABLE instead of forwarding to an instance with a copy",
    "slow-load": "add 1 s to every load",
    "update-gap": "fail requests for a vmodel while it moves to a new model, and add 1 s to every load",
    "keep-replaced": "keep the model a vmodel moved away from instead of deleting it",
}


@dataclass(frozen=True)
class Faults:
    wrong_model: bool = False
    never_evict: bool = False
    ignore_capacity: bool = False
    evict_mru: bool = False
    no_forward: bool = False
    slow_load: bool = False
    update_gap: bool = False
    keep_replaced: bool = False

    @classmethod
    def parse(cls, names: list[str]) -> Faults:
        unknown = sorted(set(names) - set(FAULTS))
        if unknown:
            raise ValueError(f"unknown fault {', '.join(unknown)} (known: {', '.join(FAULTS)})")
        return cls(**{name.replace("-", "_"): True for name in names})

    def names(self) -> list[str]:
        return [f.name.replace("_", "-") for f in fields(self) if getattr(self, f.name)]
