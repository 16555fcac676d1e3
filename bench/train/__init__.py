"""Training: the pretraining and fine-tuning loops, their schedule, FLOP accounting and budgets."""
