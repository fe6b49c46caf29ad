"""Operations: settings, observability, health, the embedded dev stack."""
