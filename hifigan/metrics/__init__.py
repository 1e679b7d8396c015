"""Evaluation metrics registered by name (FID, KID, ... arrive with their issues)."""
