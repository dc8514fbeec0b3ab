"""The optimisers over pixels: the projected L-BFGS driver (default) and
scipy's L-BFGS-B, with their shared progress, result and state types.
"""
