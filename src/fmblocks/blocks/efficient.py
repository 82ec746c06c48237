"""Efficient attention (placeholder until step 3)."""
