"""Developer tooling (reproducibility check, workspaces, mirror set-up); no stage imports it."""
