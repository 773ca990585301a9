"""metricanything.tasks."""
