"""Task bodies of Baton's DAGs, called from the ``@task`` functions the DAG builders declare.

Each body resolves the store and the connections at run time (never at parse time), does
its work in the product packages, and returns only ids and counts (XCom).
"""
