"""Identity (SPEC §6): which profiles are one person.

``normalize`` holds the identifier kinds and their normalisation, ``resolve`` the set-based SQL that
links profiles into persons, ``store`` keeps that current in the store and fixes the persons a cycle
decides with, ``admin`` loads identifiers, excludes values and explains a person, and ``gdpr``
exports and forgets a person.
"""
