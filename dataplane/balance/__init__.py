"""Pure cores of traffic management: endpoint choice (weighted P2C over peak-EWMA), passive health, retry
budget and retry rules, gRPC deadlines. No trio, no sockets, no clock: every method takes ``now``."""
