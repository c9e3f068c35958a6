"""`baysense fleet`: provision a whole site's boards from one manifest, resumably.

manifest.py reads and validates the manifest (TOML or CSV). progress.py keeps each bay's
steps in the registry. steps.py and selftest.py do the work on one board, and runner.py runs
one worker per port. view.py, export.py and site.py cover the table, the CSV export and the
gateway's ZeroTier membership.
"""
