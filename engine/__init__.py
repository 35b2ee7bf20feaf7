"""Ponder's training engine: the R1 recipe as plain Python + torch.

Nothing here imports Django; the web app drives stages through `engine.events.Sink`.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
