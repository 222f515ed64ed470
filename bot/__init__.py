"""The skinscan Telegram bot: send a photo, get the likely conditions and what to do.

It classifies nothing itself: every photo goes to the classify function over
HTTP. ``bot.app`` builds it and runs it by polling; ``bot.webhook`` is the
serverless entry point. Photos are held in memory for one request, never stored.
"""
