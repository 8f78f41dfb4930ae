"""`mmgitops apply`: install a profile in Argo CD's order on any cluster, without Argo CD."""
