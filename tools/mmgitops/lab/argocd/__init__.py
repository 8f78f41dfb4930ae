"""The local Argo CD: its application controller and repo server built from the pinned argo-cd module, run on the
local cluster against a git server that serves this checkout, and Argo CD's own Lua engine for the health checks."""
