"""The configuration database: destinations (secrets encrypted), records, schema, migrations."""
