"""A policy plugin that fails while being imported (a malformed input of tests/prechecks_bad/)."""

raise RuntimeError("plugin set-up failed: DCAI_PLUGIN_CONFIG is not set")
