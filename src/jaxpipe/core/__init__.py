"""What every stage and tool shares: errors, typed configs, atomic writers, console output."""
