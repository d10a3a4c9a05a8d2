"""Inventories through the years: reading them, temporal subtraction and its change evidence,
statistics, frequency-area distributions, accuracy, charts, reports, and the analysis jobs."""
