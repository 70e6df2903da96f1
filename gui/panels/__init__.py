"""Dock panels of the main window, one per module."""
