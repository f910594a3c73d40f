"""recsys_cl."""
