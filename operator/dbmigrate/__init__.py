"""dbmigrate: a Kubernetes operator that moves database servers to a new major version."""

__version__ = "0.1.0"
