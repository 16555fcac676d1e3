"""electra-bench: compare pretraining objectives at matched compute."""

__version__ = "0.1.0"
