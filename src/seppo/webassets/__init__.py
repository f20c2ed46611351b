"""Pages that work offline: vendored JS/CSS (from npm, see scripts/vendor_web_assets.py) and the
rewrite of CDN links in generated HTML (DVC plots, Great Expectations Data Docs) to local copies."""
