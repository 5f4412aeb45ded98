"""ctrldial: compare parameter-efficient fine-tuning methods for dialogue-act controlled generation."""

__version__ = "0.1.0"
