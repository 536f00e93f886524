"""The usage ledger: exact integer units per session, turn, attempt, kind, provider and model,
written durably as turns run, from which a school can be billed (see ARCHITECTURE §3)."""
