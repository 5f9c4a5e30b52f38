"""Reports: compliance.json, compliance.html and the terminal summary."""
