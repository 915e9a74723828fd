"""Executors run a plan: ``local`` in this process; others fan out (one run = one device)."""
