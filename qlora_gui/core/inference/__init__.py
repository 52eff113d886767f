"""Loading a base with an adapter, and generating from it: used while training and after."""
