"""Money: the double-entry ledger and its balance projection, job billing, the treasury and staking,
and the relay's posted price. Every number about money comes from core/economics.py."""
