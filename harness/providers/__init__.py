"""Target providers: the broker and the gateway under test, as processes, containers or URLs."""
