"""The application layer: what a verb does, as library functions usable from Python (the CLI
only parses flags, builds a `RunContext`, calls one of these and prints)."""
