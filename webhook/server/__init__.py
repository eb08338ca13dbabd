"""The admission server: the aiohttp app and its handlers, start-up and shutdown, metrics
and logs. The only package that knows HTTP.
"""
