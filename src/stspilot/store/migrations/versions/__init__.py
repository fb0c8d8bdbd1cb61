"""Migration versions, oldest first (``0001_...``)."""
