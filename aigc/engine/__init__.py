"""The shared model loader and sampling core. Nothing here knows about tasks."""
