"""Tongban: a cross-region interoperability gateway for government services."""
