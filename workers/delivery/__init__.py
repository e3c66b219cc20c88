"""Delivering one notification: the deliverer, its run context and its gates' effects."""
