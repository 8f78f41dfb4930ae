#!/usr/bin/env bash
# Scratch: render every non-Component kustomization, or compare two render trees. Delete when done.
#   scratch-render-proof.sh render OUTDIR
#   scratch-render-proof.sh compare BEFORE AFTER
set -euo pipefail
cd /work/main
case "$1" in
render)
  out=$2; rm -rf "$out"; mkdir -p "$out"
  find argocd/bootstrap argocd/apps argocd/applications overlays components -name kustomization.yaml | sort |
  while read -r k; do
    d=$(dirname "$k")
    if grep -q '^kind: Component' "$k"; then continue; fi
    mkdir -p "$out/$(dirname "$d")"
    .venv/bin/kubectl kustomize "$d" > "$out/$d.yaml" 2> "$out/$d.err" || echo "FAILED $d" >&2
    [ -s "$out/$d.err" ] || rm -f "$out/$d.err"
  done
  ;;
compare)
  .venv/bin/python - "$2" "$3" <<'PY'
import json, sys, yaml
from pathlib import Path
before, after = Path(sys.argv[1]), Path(sys.argv[2])
def load(p):
    objs = {}
    for d in yaml.safe_load_all(p.read_text()):
        if not d: continue
        m = d.get("metadata", {})
        key = (d.get("apiVersion"), d.get("kind"), m.get("namespace") or "", m.get("name"))
        assert key not in objs, (p, key)
        objs[key] = d
    return objs
def ordered(x):  # JSON with key order kept: catches field order changes too
    return json.dumps(x)
rels = sorted({p.relative_to(before) for p in before.rglob("*.yaml")} | {p.relative_to(after) for p in after.rglob("*.yaml")})
total_diff = 0
for rel in rels:
    b, a = before / rel, after / rel
    if not a.exists():
        print(f"{str(rel):75} REMOVED (was {len(load(b))} objects)"); continue
    if not b.exists():
        print(f"{str(rel):75} NEW ({len(load(a))} objects)"); continue
    ob, oa = load(b), load(a)
    only_b, only_a = ob.keys() - oa.keys(), oa.keys() - ob.keys()
    semantic = [k for k in ob.keys() & oa.keys() if ob[k] != oa[k]]
    order = [k for k in ob.keys() & oa.keys() if ob[k] == oa[k] and ordered(ob[k]) != ordered(oa[k])]
    n = len(only_b) + len(only_a) + len(semantic)
    total_diff += n
    status = "same" if n == 0 and not order else f"DIFF only-before={sorted(only_b)} only-after={sorted(only_a)} changed={sorted(semantic)} key-order-only={sorted(order)}"
    print(f"{str(rel):75} {len(ob):3} -> {len(oa):3} objects  {status}")
print("differing objects:", total_diff)
PY
  ;;
esac
