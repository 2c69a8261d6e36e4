"""Robustness to corruptions: corrupted test sets and the stage that evaluates every model on them.
"""
