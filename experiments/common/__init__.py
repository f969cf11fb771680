"""What every experiment run shares: IO, runtime flags, model state, the run, restoring."""
