"""click entry points: parse, call, print. Heavy imports stay inside the commands."""
