"""The command line: parses options and environment, builds every object, and wires them together."""
