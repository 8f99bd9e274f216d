"""Airflow Connections mapped to Baton: the store (:mod:`.store`) and the channels (:mod:`.channels`)."""
