"""Transfer strategies: ``base.py`` is the protocol, every other module registers one strategy."""
