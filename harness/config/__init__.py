"""The config layer: a suite file's shapes (schema.py, with the settings rule ``layered_settings``),
issues with file:line marks (issues.py), bounded YAML reading (load.py) and sources and targets
checked against their registries (components.py). It imports nothing above it: a suite is
assembled, its search blocks parsed and its cells checked by :mod:`harness.suite`."""
