"""Plots and the HTML explanation report."""
