"""Executing one run: seeding, the training loop, the feature cache, cost meters."""
