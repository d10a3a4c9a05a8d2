"""Jobs: their specs, the runner, events, run folders, faults, the command line and the
worker's entry point."""
