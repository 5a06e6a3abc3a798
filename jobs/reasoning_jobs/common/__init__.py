"""Pieces every job shares: reporting results back to the operator."""
