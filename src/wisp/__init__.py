"""wisp: serverless on one machine with Knative's resource model."""

__version__ = "0.1.0"
