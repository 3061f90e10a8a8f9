"""Test fixtures that ship with memtrace (the Arc emulator); not imported by the server."""
