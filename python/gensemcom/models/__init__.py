"""models.

:func:`locate` (from :mod:`gensemcom.models.local`) is where every hub loader asks
which id or folder to load (``$GENSEMCOM_MODELS``); :mod:`gensemcom.models.manifest`
lists every model the systems use (``gensemcom models``).
"""
from .local import ENV_MODELS, locate

__all__ = ["ENV_MODELS", "locate"]
