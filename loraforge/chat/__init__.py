"""How a conversation becomes model text and back: the chat template that renders messages and tools
(`format.py`, templates in `templates/`), and parsing the tool calls out of what a model says
(`parsing.py`). Beneath every other subpackage: training, generation and evaluation all speak it."""
