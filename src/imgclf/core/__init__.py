"""Layer 1, core: what every other layer stands on; imports nothing from imgclf above it.

errors (`UserError`, exit status 2), fs (atomic writes, `free_name`, new run
folders), config (`TrainConfig`, YAML), run (the `Run` bundle on disk),
manifest (the rows of manifest.csv and their `Status`), progress, hardware,
quiet_stderr, version. The map of all layers: docs/architecture.md.
"""
