"""The marketing store: tables, migrations and the database engine."""
