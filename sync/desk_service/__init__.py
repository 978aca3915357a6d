"""The central desk service: database, workers, search (docs/desk.md)."""
