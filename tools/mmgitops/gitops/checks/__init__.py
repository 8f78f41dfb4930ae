"""The checks `mmgitops validate` runs on every rendered object: schemas, CEL rules, policy, Argo CD health."""
