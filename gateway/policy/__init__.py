"""Who may call and how much: keys and teams, rate limits, budgets, fleet-wide leases and spend tags."""
