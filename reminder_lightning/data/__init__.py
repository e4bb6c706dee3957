"""Data: the record type, record sources (one plug-in per dataset layout) and the DataModule."""
