"""Logical models to targets: the router, load balancing, circuit breakers and shared cooldowns."""
