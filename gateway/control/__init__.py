"""The control socket between the storegw CLI and the running daemon."""
