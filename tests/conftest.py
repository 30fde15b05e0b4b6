"""Test-wide settings."""

import os

from hypothesis import settings

# In CI the property tests draw the same examples on every run, so a landing never depends on a
# random draw; locally they keep exploring (and keep failures in .hypothesis/ to replay them).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
