"""Federated training and model engineering as pure functions: a model's weights (a list of numpy
arrays) in, weights, scores and verdicts out — no chain, no storage, no agent.

``model`` evaluates and stores weights, ``digits`` makes the example data (scikit-learn's digits,
split non-IID), ``aggregation`` federates accepted updates (Flower's functions), ``judge`` decides
whether one update deserves its pay, ``restructure`` checks a model engineer's smaller model.
"""
