"""Commands registered on the mossep CLI (filled in by its owner)."""
from .app import app  # noqa: F401
