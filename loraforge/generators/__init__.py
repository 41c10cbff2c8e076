"""Synthetic training data from a teacher model, and its verification: value models per parameter,
few-shot request prompts from a built-in bank, the matched-call and realism checks, near-duplicate
filtering, and the data report. Nothing unverified reaches training."""
