"""One module per customer screen; each builds its widgets once and `update()`s them."""
