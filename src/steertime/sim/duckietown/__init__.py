"""Duckietown (gym-duckietown) as a second, third-party simulator: installed in its own
virtual environment (install.py), stepped over a pipe protocol (protocol.py, bridge.py,
client.py), recorded and driven like the built-in simulator (loop.py)."""
