"""Scoring models: exact match of tool calls (the function-calling leaderboard's rules), label metrics,
the LLM judge, the export-fidelity check of a GGUF adapter against its PEFT model, error analysis, and
`loraforge eval`. Every score is taken through llama.cpp, with the base model beside the adapter."""
