"""The run dashboard (``lor serve``): a FastAPI app over the read-only database role."""
