"""The run loop behind `loraforge run`: the orchestrator that runs the phases of each iteration (generate,
train, export, evaluate, decide) and resumes them, the strategy that plans the next iteration from the
errors, the adapter registry that keeps the best, the run state and config, and the triggers."""
