"""Document stores behind the `DocumentStore` port (ports.py)."""
