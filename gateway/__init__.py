"""Tollway's server: everything that is not specific to one provider's wire format."""
