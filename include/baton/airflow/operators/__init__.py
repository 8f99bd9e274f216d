"""Baton's operators: the cycle's deferrable wait for its campaigns (:mod:`.wait`)."""
