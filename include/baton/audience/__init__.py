"""Audience SQL: render a campaign's Jinja-templated query with bound parameters and
load its rows into the (campaign, cycle) candidate batch."""
