"""sweeplab."""
