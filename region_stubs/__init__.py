"""Region stubs: runnable stand-ins for provincial platforms (development, tests, demos)."""
