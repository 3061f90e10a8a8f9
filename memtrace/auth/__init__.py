"""Who may do what: API keys and permissions, rate limits, and the master-key envelope of stored
secrets."""
