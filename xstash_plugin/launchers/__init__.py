"""Launchers: how a run request becomes a finished process."""
