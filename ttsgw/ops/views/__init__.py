"""Human renderings of the admin API's answers: short aligned tables and `key: value` blocks.

Pure functions of the API's JSON (and of `now`, where ages are shown), so they are tested
without a server. `--json` bypasses this package entirely.
"""
