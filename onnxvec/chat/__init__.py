"""Chat completions: prompts, generation in a process of its own, fair turns, the service."""
