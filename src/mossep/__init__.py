"""mossep: speech separation with MossFormer."""
from .errors import MossepError

__version__ = "0.1.0"
__all__ = ["MossepError", "__version__"]
