"""The workspace and reproducibility checks: throw-away copies of the project
(``workspace``), ``jaxpipe-repro-check`` (``repro``) and its committed record of every
output (``expected``), the scaling measurement, and ``jaxpipe-mirror``; no stage imports it.
"""
