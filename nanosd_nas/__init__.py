"""nanosd-nas: hardware-aware architecture search for edge diffusion models (application shell)."""

__version__ = "0.1.0"
