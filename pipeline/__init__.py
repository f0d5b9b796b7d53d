"""dpu-pipeline: trustworthy occupancy counts from door-sensor events."""

__version__ = "0.1.0"
