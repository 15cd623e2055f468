"""The role daemons (creator, annotator, engineer, contributor) and the ``decentralml`` command."""
