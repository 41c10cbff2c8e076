"""Turning a trained PEFT adapter into what users run: the GGUF export, its fidelity proof against the
PEFT model, and the serving bundle, in one function (`proven.py`) that the loop and `loraforge export`
share. It sits above `trainers` (export, bundle) and `evaluators` (fidelity)."""
