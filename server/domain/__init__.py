"""The domain services: people, credentials, audit, revocations (and later spaces, pages,
threads...). One module per concept, each over the `Database` port of server/db.py."""
