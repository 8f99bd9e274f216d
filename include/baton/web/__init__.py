"""The Marketing view inside Airflow: its pages and data (app, queries), decisions explained in words
(explain), previews and test sends (preview).  Served by the Baton plugin; imports no Airflow."""
