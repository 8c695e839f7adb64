"""mossep: speech separation with MossFormer."""
from .errors import MossepError
from .separator import Separator

__version__ = "0.1.0"
__all__ = ["MossepError", "Separator", "__version__"]
