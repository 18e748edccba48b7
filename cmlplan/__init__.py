"""cmlplan: declarative plan/apply for serving Python models."""

__version__ = "0.1.0"
