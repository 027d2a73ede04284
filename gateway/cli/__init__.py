"""The storegw command line: the daemon entry point and the technician tools."""
