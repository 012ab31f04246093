"""The flow domain: flow files, keywords, the consent state machine and the engine."""
