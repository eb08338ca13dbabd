"""What every test tier shares, defined once: reviews and roles, free ports, and the rule that
a tier whose tools are missing is skipped with one reason, or fails when it is required."""
