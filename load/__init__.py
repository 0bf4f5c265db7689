"""Load tools: the engine benchmark (``python -m load.bench``) and its no-op task."""
