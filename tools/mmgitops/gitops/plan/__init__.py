"""`mmgitops plan`: the order Argo CD syncs a bootstrap or profile in, by wave and dependency."""
