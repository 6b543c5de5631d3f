"""tracekit: forensics, replay and chaos for the failure paths of AWS Lambda."""

__version__ = "0.1.0"

__all__ = ["__version__"]
