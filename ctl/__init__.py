"""meshctl: the operator's command line (connection tables, status, policy checks, the namespace lab)."""
