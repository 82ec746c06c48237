"""Readers for the data fmblocks trains on: shipped defaults and users' local files. Nothing downloads."""
