"""Security: the dev PKI, gateway identities, API principals and tokens, the audit log."""
