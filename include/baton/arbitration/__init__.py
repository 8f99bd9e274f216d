"""Arbitration: the engine of SPEC.md §3 (which candidates become messages, per person).

``scenario`` reads and writes the file-based scenarios of ``baton simulate`` (SPEC §5);
``simulate`` runs one cycle of the SQL engine over such a scenario.
"""
