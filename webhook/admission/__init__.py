"""The admission core, pure: a Pod and the identity sources in, a verdict and an additive
JSON patch out. No I/O, no logging, no clock; the server and `mutate` share every line.
"""
