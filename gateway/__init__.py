"""Large-file upload gateway for customer support tickets."""

__version__ = "0.1.0"
