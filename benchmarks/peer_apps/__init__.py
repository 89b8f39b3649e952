"""The peer servers' own code (run inside their own virtual environments)."""
