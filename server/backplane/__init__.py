"""Fan-out between the nodes of one site, behind the `Backplane` port (ports.py)."""
