"""Pre-operative / post-operative pairing: pure rules in :mod:`rules`, catalogue glue in :mod:`store`."""
