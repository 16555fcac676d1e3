"""Data preparation: corpus -> tokenizer -> packed pretraining blocks, cached by content."""
