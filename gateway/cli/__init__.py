"""The `tollway` command line: serve, check-config, keys and teams, migrations, imports, reports and
backups."""
