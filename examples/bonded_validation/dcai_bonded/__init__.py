"""Bonded validation, an incentive mechanism plugin for dcai-arena (see README.md).

The mechanism class lives in `dcai_bonded.mechanism` and is registered by the `dcai.mechanisms`
entry point in pyproject.toml; nothing in dcai-arena names it.
"""
