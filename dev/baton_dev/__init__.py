"""Development and test tooling for Baton — never shipped with the product.

``baton_dev`` holds what the demo and the tests need around the product but what no
production deployment runs: a real SMTP server writing a Maildir and an emulator of the
Twilio, FCM and Google OAuth APIs (:mod:`baton_dev.sinks`), and the ``make demo`` driver
(:mod:`baton_dev.demo`).  It lives outside ``include/`` so that the Airflow image (which
copies ``include/``) and the runtime requirements hold only the product, as Airflow keeps
``devel-common/src/tests_common/`` apart from ``airflow-core``.
"""
