"""Database engines: everything that talks to a database server lives below here."""
