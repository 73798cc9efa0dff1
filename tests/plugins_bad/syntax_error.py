"""A policy plugin with a syntax error (a malformed input of tests/prechecks_bad/)."""

class Bot(
    def decide(self, obs):
        return []
