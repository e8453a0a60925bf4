"""The admin API and its operations: keys, teams, admin keys, roles, and the audit of admin changes."""
