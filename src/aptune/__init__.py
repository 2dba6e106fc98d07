"""aptune: Adaptive Pruning and Tuning of pretrained language models."""
