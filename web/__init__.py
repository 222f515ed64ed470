"""The skinscan upload page: static files in ``static/`` plus a small Flask app (:mod:`web.app`)."""
